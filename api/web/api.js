// Calls to the janusq /v1 API, with the API key (if any) the user saved in this browser.
// The key goes only in the Authorization header, never in a URL.

const KEY_STORAGE = "janusq.apiKey";

export function savedKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export function authHeaders(extra = {}) {
  const key = savedKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

// What the API said went wrong: its {"error": {"code", "message", "field"}} body, or the
// HTTP status alone when the answer was not the API's JSON (a proxy's page, a dropped link).
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall through to the status line
  }
  const error = body && body.error;
  if (error && error.code) return new ApiError(response.status, error.code, error.message || "", error.field);
  return new ApiError(response.status, "http_" + response.status, response.statusText || "request failed");
}

// fetch() a /v1 path with the key; the parsed JSON on success (null for 204), else an ApiError.
export async function api(path, { method = "GET", json, form, headers = {} } = {}) {
  const init = { method, headers: authHeaders(headers) };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // FormData: the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    throw new ApiError(0, "network_error", `the API did not answer (${cause.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

export const submitJob = (body) => api("/v1/jobs", { method: "POST", json: body });
export const submitUpload = (form) => api("/v1/jobs", { method: "POST", form });
export const getJob = (id) => api(`/v1/jobs/${encodeURIComponent(id)}`);
export const cancelJob = (id) => api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });

export function listJobs(limit, cursor) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return api(`/v1/jobs?${query}`);
}
