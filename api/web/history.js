// Job history (GET /v1/jobs, newest first, paged by next_cursor) with cancel and download,
// and the gallery: the images of the succeeded generate jobs in the history loaded so far.

import { cancelJob, listJobs } from "./api.js";
import { describe, isTerminal } from "./jobs.js";

const REFRESH_MS = 3000; // while a listed job is unfinished, so its row and the gallery keep up
const MAX_LIMIT = 100; // GET /v1/jobs' largest page

export class History {
  constructor({ table, more, gallery, limit, onError }) {
    Object.assign(this, { table, more, gallery, limit, onError });
    this.jobs = [];
    this.nextCursor = null;
    this.timer = null;
    more.addEventListener("click", () => this.loadMore());
    table.addEventListener("click", (event) => this.onClick(event));
  }

  // The first page again (after a submit, a cancel, a job finishing, a new key).
  async reload() {
    await this.fetchPage(null, (page) => page.data);
  }

  async loadMore() {
    await this.fetchPage(this.nextCursor, (page) => [...this.jobs, ...page.data]);
  }

  async fetchPage(cursor, merge) {
    try {
      const page = await listJobs(this.limit(), cursor);
      this.jobs = merge(page);
      this.nextCursor = page.next_cursor;
    } catch (error) {
      this.onError(error);
    }
    this.render();
  }

  render() {
    this.table.replaceChildren(...this.jobs.map(row));
    this.more.hidden = !this.nextCursor;
    renderGallery(this.gallery, this.jobs);
    clearTimeout(this.timer);
    if (this.jobs.some((job) => !isTerminal(job.status))) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  // Refresh the rows already shown (as many as are loaded, up to a page), keeping the paging.
  async refresh() {
    try {
      const page = await listJobs(Math.min(Math.max(this.jobs.length, 1), MAX_LIMIT), null);
      this.jobs = page.data;
      this.nextCursor = page.next_cursor;
    } catch (error) {
      this.onError(error);
    }
    this.render();
  }

  async onClick(event) {
    const button = event.target.closest("button.cancel");
    if (!button) return;
    button.disabled = true;
    try {
      await cancelJob(button.closest("tr").dataset.jobId);
    } catch (error) {
      this.onError(error);
    }
    await this.refresh();
  }
}

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (typeof content === "string") td.textContent = content;
  else if (content) td.append(...content);
  return td;
}

function row(job) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = job.id;
  tr.dataset.status = job.status;
  const when = new Date(job.created_at).toLocaleString();
  const status = job.error ? `${job.status} (${job.error.code})` : job.status;
  tr.append(cell(when), cell(job.type), cell(status, "status"), cell(describe(job), "what"), cell(actions(job), "actions"));
  return tr;
}

function actions(job) {
  if (!isTerminal(job.status)) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "cancel";
    button.textContent = "Cancel";
    return [button];
  }
  if (job.status !== "succeeded" || job.expired_result) return [];
  if (job.result.images) {
    return job.result.images.map((image, index) =>
      link(downloadUrl(image.url), `janus-${job.id.slice(0, 8)}-${index}.png`, `PNG ${index + 1}`));
  }
  // An answer has no file of its own: hand the text over as one.
  const text = `data:text/plain;charset=utf-8,${encodeURIComponent(job.result.text)}`;
  return [link(text, `janus-${job.id.slice(0, 8)}.txt`, "Answer .txt")];
}

// `download` on a link is ignored once the image comes from another origin (the 307 to S3):
// ?download=true makes the response itself an attachment (the signature stays valid).
function downloadUrl(imageUrl) {
  const url = new URL(imageUrl, window.location.href);
  url.searchParams.set("download", "true");
  return url.href;
}

function link(href, filename, label) {
  const a = document.createElement("a");
  a.className = "download";
  a.href = href;
  a.download = filename;
  a.textContent = label;
  return a;
}

// Figures already shown are kept (by job and index): a re-listed job's image URLs carry a
// fresh signature, and replacing them would load every picture again at each refresh.
function renderGallery(gallery, jobs) {
  const shown = new Map([...gallery.children].map((figure) => [figure.dataset.key, figure]));
  const figures = [];
  for (const job of jobs) {
    if (job.status !== "succeeded" || job.expired_result || !job.result.images) continue;
    job.result.images.forEach((image, index) => {
      const key = `${job.id}/${index}`;
      figures.push(shown.get(key) || figure(key, image.url, `image ${index + 1}: ${describe(job)}`, describe(job)));
    });
  }
  gallery.replaceChildren(...figures);
}

function figure(key, src, alt, text) {
  const node = document.createElement("figure");
  node.dataset.key = key;
  const img = document.createElement("img");
  Object.assign(img, { src, alt });
  const caption = document.createElement("figcaption");
  caption.textContent = text;
  node.append(img, caption);
  return node;
}
