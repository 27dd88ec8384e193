// The page's wiring: the key, the two submit forms, live cards, history and the error banner.

import { saveKey, savedKey, submitJob, submitUpload } from "./api.js";
import { History } from "./history.js";
import { trackJob } from "./jobs.js";

const $ = (selector) => document.querySelector(selector);

function showError(error) {
  const box = $("#error");
  const where = error.field ? ` (field: ${error.field})` : "";
  const hint = error.status === 401 ? " Enter a valid API key above and save it." : "";
  box.textContent = `${error.code}${error.status ? ` [${error.status}]` : ""}: ${error.message}${where}.${hint}`;
  box.dataset.code = error.code;
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

const history = new History({
  table: $("#history"),
  more: $("#history-more"),
  gallery: $("#gallery"),
  limit: () => Number($("#history-limit").value),
  onError: showError,
});

function follow(job) {
  trackJob($("#live"), job, { onFinished: () => history.reload(), onError: showError });
  history.reload();
}

// Submits with the form's button disabled, so a double click makes one job.
function onSubmit(form, makeJob) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await makeJob();
      clearError();
      follow(job);
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  });
}

onSubmit($("#generate-form"), () => {
  const body = {
    type: "generate",
    prompt: $("#prompt").value,
    num_images: Number($("#num-images").value),
    cfg_weight: Number($("#cfg-weight").value),
  };
  // Empty means "let the service choose" (it stores the seed it chose on the job).
  if ($("#seed").value !== "") body.seed = Number($("#seed").value);
  return submitJob(body);
});

onSubmit($("#understand-form"), () => {
  const form = new FormData();
  form.set("type", "understand");
  form.set("question", $("#question").value);
  form.set("max_new_tokens", $("#max-new-tokens").value);
  // As for images: empty lets the service choose; a seed makes the answer reproducible.
  if ($("#understand-seed").value !== "") form.set("seed", $("#understand-seed").value);
  const file = $("#image").files[0];
  if (file) form.set("image", file); // none: the API's own error names the missing field
  return submitUpload(form);
});

function showKeyState() {
  $("#key-state").textContent = savedKey() ? "key saved in this browser" : "no key saved";
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  saveKey($("#api-key").value.trim());
  showKeyState();
  clearError();
  history.reload();
});

$("#forget-key").addEventListener("click", () => {
  saveKey("");
  $("#api-key").value = "";
  showKeyState();
  history.reload();
});

$("#history-refresh").addEventListener("click", () => history.reload());
$("#history-limit").addEventListener("change", () => history.reload());

$("#api-key").value = savedKey();
showKeyState();
history.reload();
