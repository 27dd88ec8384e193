"""`janusq submit` and `janusq jobs`: the command line on the client, for users of a running
service. They need no server configuration (janusq/cli.py hands them over before loading it);
every failure is one line on stderr and exit status 1."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from janusq.client.client import Client
from janusq.client.errors import JanusError, JobFailedError
from janusq.client.handle import JobHandle
from janusq.client.job import Job
from janusq.client.sse import Event

COMMANDS = ("submit", "jobs")
BAR_WIDTH = 30


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="janusq")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.client_handler(Client(args.url, args.api_key), args) or 0
    except (JanusError, OSError) as exc:  # OSError: an unreadable image, an unwritable --out
        print(f"janusq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def add_commands(commands) -> None:
    """Adds `submit` and `jobs` to a subparsers object (janusq/cli.py lists them in its help too)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the service (default $JANUS_URL, else http://127.0.0.1:8000)")
    common.add_argument("--api-key", help="an API key (default $JANUS_API_KEY); needed when auth is on")
    common.add_argument("--json", action="store_true", help="print JSON (the API's job objects) for scripts")
    _add_submit(commands, common)
    _add_jobs(commands, common)


def _add_submit(commands, common) -> None:
    submit = commands.add_parser("submit", help="submit a job to a running service (generate, understand)")
    kinds = submit.add_subparsers(dest="kind", required=True)
    waiting = argparse.ArgumentParser(add_help=False, parents=[common])
    waiting.add_argument("--wait", action="store_true", help="wait for the result (else print the job's id)")
    waiting.add_argument("--timeout", type=float, help="with --wait: give up waiting after this many seconds")
    waiting.add_argument("--seed", type=int)
    waiting.add_argument("--temperature", type=float)
    waiting.add_argument("--priority", choices=("low", "normal", "high"))
    generate = kinds.add_parser("generate", parents=[waiting], help="text to images")
    generate.add_argument("prompt")
    generate.add_argument("--num-images", type=int, default=4)
    generate.add_argument("--cfg-weight", type=float)
    generate.add_argument("--out", default=".", help="with --wait: folder for the PNGs (default: here)")
    generate.set_defaults(client_handler=_submit_generate)
    understand = kinds.add_parser("understand", parents=[waiting], help="answer a question about an image")
    understand.add_argument("image", help="an image file (PNG, JPEG, WEBP, BMP, GIF)")
    understand.add_argument("question")
    understand.add_argument("--max-new-tokens", type=int)
    understand.add_argument("--top-p", type=float)
    understand.set_defaults(client_handler=_submit_understand)


def _add_jobs(commands, common) -> None:
    jobs = commands.add_parser("jobs", help="your jobs on a running service: list, get, cancel, watch")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = actions.add_parser("list", parents=[common], help="your jobs, newest first")
    listing.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "canceled", "expired"))
    listing.add_argument("--type", dest="kind", choices=("generate", "understand"))
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20; 0: all)")
    listing.set_defaults(client_handler=_jobs_list)
    for name, handler, text in (("get", _jobs_get, "one job"), ("cancel", _jobs_cancel, "cancel a job"),
                                ("watch", _jobs_watch, "follow a job live: a progress bar, the streamed "
                                                       "answer, until it finishes")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("job_id", metavar="JOB_ID")
        action.set_defaults(client_handler=handler)


# -- submit -----------------------------------------------------------------------------------
def _submit_generate(client: Client, args) -> int:
    handle = client.submit("generate", prompt=args.prompt, num_images=args.num_images, cfg_weight=args.cfg_weight,
                           **_shared_params(args))
    if not args.wait:
        return _print_submitted(handle, args)
    job = _finished(handle, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(handle.images()):
        path = out / f"{job.id}-{index}.png"
        path.write_bytes(data)
        paths.append(str(path))
    if args.json:
        print(json.dumps({**job.raw, "files": paths}, indent=2))
    else:
        print("\n".join(paths))
    return 0


def _submit_understand(client: Client, args) -> int:
    handle = client.submit("understand", image=args.image, question=args.question,
                           max_new_tokens=args.max_new_tokens, top_p=args.top_p, **_shared_params(args))
    if not args.wait:
        return _print_submitted(handle, args)
    job = _finished(handle, args)
    print(json.dumps(job.raw, indent=2) if args.json else job.answer)
    return 0


def _shared_params(args) -> dict:
    return {"seed": args.seed, "temperature": args.temperature, "priority": args.priority}


def _print_submitted(handle: JobHandle, args) -> int:
    print(json.dumps(handle.job.raw, indent=2) if args.json else handle.id)
    return 0


def _finished(handle: JobHandle, args) -> Job:
    handle.wait(args.timeout)
    return handle.raise_for_failure()


# -- jobs -------------------------------------------------------------------------------------
def _jobs_list(client: Client, args) -> int:
    jobs = list(client.jobs.list(status=args.status, kind=args.kind, limit=args.limit or None))
    if args.json:
        print(json.dumps([job.raw for job in jobs], indent=2))
        return 0
    print(f"{'ID':32}  {'TYPE':10}  {'STATUS':9}  {'PROGRESS':>8}  CREATED")
    for job in jobs:
        print(f"{job.id:32}  {job.kind:10}  {job.status:9}  {job.progress:>8.0%}  {job.timings.created_at or ''}")
    return 0


def _jobs_get(client: Client, args) -> int:
    _print_job(client.jobs.get(args.job_id), args)
    return 0


def _jobs_cancel(client: Client, args) -> int:
    _print_job(client.jobs.cancel(args.job_id), args)
    return 0


def _print_job(job: Job, args) -> None:
    if args.json:
        print(json.dumps(job.raw, indent=2))
        return
    print(f"{job.id}  {job.kind}  {job.status}  {job.progress:.0%}")
    if job.error:
        print(f"error: {job.error.code}: {job.error.message}")
    if job.answer is not None:
        print(job.answer)
    for url in job.image_urls:
        print(url)


def _jobs_watch(client: Client, args) -> int:
    handle = client.jobs.handle(args.job_id)
    view = _JsonLines() if args.json else _Terminal()
    for event in handle.events():
        view.show(event)
    view.close(handle.job)
    if not handle.job.succeeded:
        raise JobFailedError(handle.job)
    return 0


class _JsonLines:
    """--json: each event as one JSON line, for scripts (`jq` reads them one by one)."""

    def show(self, event: Event) -> None:
        print(json.dumps({"id": event.id, "event": event.type, "data": event.data}), flush=True)

    def close(self, job: Job) -> None:
        pass


class _Terminal:
    """A progress bar on stderr (redrawn in place on a terminal, a line per change otherwise);
    the answer's text on stdout as it grows; the images' URLs at the end."""

    def __init__(self):
        self.text, self.percent = "", -1
        self.tty = sys.stderr.isatty()

    def show(self, event: Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "progress":
            self._bar(float(data.get("progress", 0)), data)
        elif event.type == "output":
            text = data.get("text", "")
            new = text[len(self.text):] if text.startswith(self.text) else "\n" + text
            self.text = text
            sys.stdout.write(new)
            sys.stdout.flush()
        elif event.type == "status":
            self._line(f"status: {data.get('status')}")

    def _bar(self, fraction: float, data: dict) -> None:
        percent = int(fraction * 100)
        if percent == self.percent:
            return
        self.percent = percent
        filled = int(fraction * BAR_WIDTH)
        steps = f" step {data['step']}/{data['steps']}" if "step" in data and "steps" in data else ""
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}%{steps}"
        if self.tty:
            sys.stderr.write(f"\r{bar}")
            sys.stderr.flush()
        else:
            print(bar, file=sys.stderr)

    def _line(self, text: str) -> None:
        if self.tty and self.percent >= 0:
            sys.stderr.write("\n")
        print(text, file=sys.stderr)

    def close(self, job: Job) -> None:
        if self.text:
            sys.stdout.write("\n")
        if job.succeeded and job.answer is not None and not self.text:
            print(job.answer)  # the stream kept no output events (they expire): the final answer
        for url in job.image_urls:
            print(url)
        self._line(f"job {job.id} {job.status}")
