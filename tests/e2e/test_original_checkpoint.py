"""JANUS_MODEL naming DeepSeek's original-format folder: real API and worker processes serve it.

The worker converts it once into the data dir and says so; the API reads its tokenizer without
torch; a restarted worker reuses the converted copy.
"""
from __future__ import annotations

from tests.e2e.helpers import data_url, png_bytes
from tests.e2e.stack import Stack
from tests.janus_model.original_format import build_original_checkpoint

SAID = "converted the original-format janus-pro checkpoint"


def test_an_original_folder_is_served_after_one_conversion(tmp_path_factory, tiny_checkpoint):
    original = build_original_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("downloads") / "Janus-Pro-tiny")
    data_dir = tmp_path_factory.mktemp("var")
    stack = Stack({"JANUS_DATA_DIR": str(data_dir), "JANUS_MODEL": str(original)}, tmp_path_factory.mktemp("logs"))
    try:
        stack.start(workers=1)
        _answer_one_question(stack)
        assert _said(stack) == 1, stack.logs()
        [converted] = _converted(data_dir)
        assert converted.name.startswith("Janus-Pro-tiny-") and (converted / "config.json").is_file()

        stack.stop_worker(stack.workers[0])
        stack.start_worker()
        _answer_one_question(stack)
        assert _said(stack) == 1, "a restarted worker converted again"
    finally:
        stack.stop()


def _answer_one_question(stack: Stack) -> None:
    response = stack.submit(type="understand", question="What is it?", max_new_tokens=4, temperature=0,
                            image=data_url(png_bytes()))
    assert response.status_code == 202, response.text  # the API read the original folder's tokenizer
    done = stack.wait(response.json()["id"], timeout=300)
    assert done["status"] == "succeeded", (done, stack.logs())
    assert done["result"]["model"]["prompt_format"].endswith("<|User|>: <image_placeholder>\n{question}\n\n<|Assistant|>:")


def _said(stack: Stack) -> int:
    return sum(path.read_text(errors="replace").count(SAID) for path in stack.log_dir.glob("*.log"))


def _converted(data_dir):
    return [path for path in (data_dir / "models" / "converted").iterdir() if path.is_dir()]
