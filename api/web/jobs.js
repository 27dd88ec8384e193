// Live job cards: one per job submitted from this page, fed by the job's event stream.
// Previews arrive as data URLs inside the events; the finished images are the job's result
// URLs, which the API signs when auth is on, so an <img> loads them without the key.

import { followJob } from "./sse.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled", "expired"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

export function describe(job) {
  const params = job.params || {};
  return job.type === "generate" ? params.prompt || "" : params.question || "";
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

// Renders a card for `job` at the top of `container`, follows its events, and calls
// onFinished(job) with the finished job. Errors of the stream go to onError.
export function trackJob(container, job, { onFinished, onError }) {
  const card = buildCard(job);
  container.prepend(card);
  const show = (event) => applyEvent(card, event);
  followJob(job.id, show)
    .then((finished) => finished && onFinished(finished))
    .catch((error) => {
      card.querySelector(".job-error").textContent = `event stream: ${error.message}`;
      onError(error);
    });
  return card;
}

function buildCard(job) {
  const card = el("article", { class: "job-card", "data-job-id": job.id, "data-status": job.status });
  const header = el("header");
  header.append(el("span", { class: "job-type" }, job.type), el("code", { title: job.id }, job.id.slice(0, 8)),
    el("span", { class: "status" }, job.status));
  const meter = el("div", { class: "meter" });
  meter.append(el("progress", { max: "1", value: String(job.progress || 0) }), el("span", { class: "step" }));
  card.append(header, el("p", { class: "what" }, describe(job)), meter);
  card.append(job.type === "generate" ? el("div", { class: "previews images" }) : el("pre", { class: "answer" }));
  card.append(el("p", { class: "job-error", role: "status" }));
  return card;
}

function applyEvent(card, { event, data }) {
  if (event === "status") setStatus(card, data.status, data.error);
  else if (event === "progress") setProgress(card, data);
  else if (event === "preview") showPreviews(card, data.images || []);
  else if (event === "output") card.querySelector(".answer").textContent = data.text;
  else if (event === "completed") showFinished(card, data);
}

function setStatus(card, status, error) {
  card.dataset.status = status;
  card.querySelector(".status").textContent = status;
  if (error) card.querySelector(".job-error").textContent = `${error.code}: ${error.message}`;
}

function setProgress(card, { progress, step, steps, eta_seconds: eta }) {
  card.querySelector("progress").value = progress;
  const left = eta == null ? "" : `, about ${eta.toFixed(1)} s left`;
  card.querySelector(".step").textContent = `${Math.round(progress * 100)}% (step ${step}/${steps}${left})`;
}

function showPreviews(card, images) {
  const box = card.querySelector(".previews");
  for (const { index, url } of images) {
    let img = box.querySelector(`img[data-index="${index}"]`);
    if (!img) {
      img = el("img", { class: "preview", "data-index": String(index), alt: `preview of image ${index + 1}` });
      box.append(img);
    }
    img.src = url;
  }
}

function showFinished(card, job) {
  setStatus(card, job.status, job.error);
  if (job.status === "succeeded") {
    card.querySelector("progress").value = 1;
    card.querySelector(".step").textContent = `done in ${job.metrics.run_seconds} s`;
  }
  if (job.result && job.result.images) {
    const box = card.querySelector(".previews");
    box.replaceChildren(...job.result.images.map((image, index) =>
      el("img", { class: "result", src: image.url, alt: `image ${index + 1} of ${job.id}` })));
  } else if (job.result && job.result.text !== undefined) {
    card.querySelector(".answer").textContent = job.result.text;
  }
}
