// A job's event stream (GET /v1/jobs/<id>/events) read with fetch() rather than EventSource:
// EventSource cannot send the Authorization header. Parses server-sent events as the spec says
// (id, event, data, retry; comments ignored) and reconnects with Last-Event-ID when the
// server closes before `completed` (a declined stream, a dropped connection).

import { ApiError, authHeaders, errorFrom } from "./api.js";

const MAX_FAILED_CONNECTS = 5;

// Calls onEvent({id, event, data}) for each event until `completed`; resolves with the
// finished job. `signal` (an AbortSignal) stops it.
export async function followJob(jobId, onEvent, signal) {
  const state = { lastId: null, retryMs: 2000, completed: null, failures: 0 };
  while (!state.completed) {
    const connected = await readOnce(jobId, state, onEvent, signal);
    if (state.completed || connected === "done") break;
    state.failures = connected ? 0 : state.failures + 1;
    if (state.failures >= MAX_FAILED_CONNECTS) {
      throw new ApiError(0, "network_error", "lost the job's event stream; reload to follow it again");
    }
    await sleep(state.retryMs, signal);
  }
  return state.completed;
}

// One connection. True when it was made (and then closed), false when it could not be.
async function readOnce(jobId, state, onEvent, signal) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (state.lastId) headers["Last-Event-ID"] = state.lastId;
  let response;
  try {
    response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal });
  } catch (error) {
    if (signal && signal.aborted) throw error;
    return false;
  }
  if (response.status === 204) return "done"; // the server says we have had everything
  if (!response.ok) throw await errorFrom(response); // 401, 404...: reconnecting will not help
  try {
    await parseStream(response.body, state, onEvent);
  } catch (error) {
    if (signal && signal.aborted) throw error;
  }
  return true;
}

async function parseStream(body, state, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let fields = {};
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // an unfinished line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        dispatch(fields, state, onEvent);
        fields = {};
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        fields[name] = name === "data" && fields.data !== undefined ? `${fields.data}\n${value}` : value;
      }
    }
  }
}

function dispatch(fields, state, onEvent) {
  if (fields.retry && /^\d+$/.test(fields.retry)) state.retryMs = Number(fields.retry);
  if (fields.id !== undefined) state.lastId = fields.id;
  if (fields.data === undefined) return;
  const event = { id: fields.id, event: fields.event || "message", data: JSON.parse(fields.data) };
  if (event.event === "completed") state.completed = event.data;
  onEvent(event);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}
