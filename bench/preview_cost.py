#!/usr/bin/env python3
"""What previews cost a generation: the time spent making them over the generation's time.

Loads a checkpoint (default: the tiny one under var/, built by `janusq run` or the tests), runs
one batch of --images images with --previews previews per image, timing every preview (the
palette lookup and the JPEG encoding, janus_model/previews.py) apart from the rest, and prints
one JSON line: generation seconds, preview seconds, their share, the palette's one-time fit.

    flock /work/notes/bench.lock python bench/preview_cost.py --checkpoint var/models/janus-tiny
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from janus_model import batching, load_model, previews  # noqa: E402
from janus_model.requests import ImageRequest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="var/models/janus-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--previews", type=int, default=8)
    args = parser.parse_args()
    model = load_model(args.checkpoint, device=args.device)
    fit_started = time.perf_counter()
    previews.palette(model.model)
    fit_s = time.perf_counter() - fit_started
    spent, made = [0.0], []
    plain = batching.preview_jpegs

    def timed(*call_args):
        started = time.perf_counter()
        jpegs = plain(*call_args)
        spent[0] += time.perf_counter() - started
        return jpegs

    batching.preview_jpegs = timed
    request = ImageRequest("a red fox in the snow", num_images=args.images, seed=1, previews=args.previews,
                           on_preview=lambda images, step: made.append(step))
    started = time.perf_counter()
    model.generate_images_batch([request])
    total = time.perf_counter() - started
    print(json.dumps({"device": str(model.device), "images": args.images, "previews_per_image": len(made),
                      "generation_s": round(total, 3), "previews_s": round(spent[0], 4),
                      "share_pct": round(100 * spent[0] / total, 3), "palette_fit_once_s": round(fit_s, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
