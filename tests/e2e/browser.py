"""Headless Chromium for the web page's tests: Debian's /usr/bin/chromium driven by Playwright.

`make test` installs the browser (the Makefile's $(CHROMIUM) step); a missing one fails the
tests, as a missing PostgreSQL does. Playwright never downloads a browser here: it launches the
system's, with a fresh temporary profile per launch (Playwright's own, no --user-data-dir).
"""
from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts"  # git-ignored
# This machine reaches nothing outside: no GPU, no sandbox (root in CI), and none of the
# browser's own background traffic (updates, sync, QUIC probes).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

# Runs in the page before its modules: records what the live cards went through, so a test can
# tell that progress, previews and streamed text arrived while the job ran, not only at the end.
OBSERVER = """
window.__seen = {statuses: [], progress: [], previews: 0, answers: []};
new MutationObserver((records) => {
  for (const record of records) {
    const node = record.target;
    if (!node.matches) continue;
    if (record.type === "attributes") {
      if (node.matches(".job-card")) window.__seen.statuses.push(node.dataset.status);
      else if (node.matches(".job-card progress")) window.__seen.progress.push(Number(node.getAttribute("value")));
      else if (node.matches("img.preview") && node.src.startsWith("data:image/")) window.__seen.previews++;
    } else if (node.matches(".answer")) {
      window.__seen.answers.push(node.textContent);
    }
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                      attributeFilter: ["data-status", "value", "src"]});
"""


def launch(playwright):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)


def new_page(browser, errors: list):
    """A page in a context of its own (empty localStorage); uncaught script errors go to `errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(OBSERVER)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
