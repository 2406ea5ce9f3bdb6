"""What drafting adds around a model: ``report draft`` against the same chats sent bare.

    python benchmarks/bench_report_draft.py [IMAGES_DIR] [--repeat 3]

A canned Ollama-protocol server on 127.0.0.1 (tests/draft_helpers.py) answers every chat at
once, so the model costs nothing and what is timed is the engine's part. Anchor: the same
number of chat requests (report + labels turn per image, the same PNG bytes) through the
same backend object, with nothing around them. Measured: ``report_draft`` over the folder
(collect, sha256, image load, prompts, streaming, header/step checks, JSON labels, the labeler
on the impression, JSONL appends with fsync), with and without the labels turn; and a resumed run
(everything already in the JSONL). Printed as ratios to the anchor (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT.parent / "shared" / "data" / "cxr" / "nih_images"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from engine.api.report_draft import DraftParams, report_draft
    from engine.llm.backend import GenerationOptions, Message, create_backend
    from engine.report.draft.run import labeler_function
    from tests.draft_helpers import GOOD, LABELS_AGREE, canned, is_labels_turn

    imgs = sorted(Path(args.images).glob("*.png"))
    if not imgs:
        print(f"no PNG in {args.images}", file=sys.stderr)
        return 2

    def respond(key: str, body: dict) -> str:
        return LABELS_AGREE if is_labels_turn(body) else GOOD

    labeler_function()  # medspaCy built once, as in a long-running engine
    with canned(respond) as (url, _), tempfile.TemporaryDirectory() as tmp:
        common = {"backend": "ollama", "model": "llava:7b", "host": url, "stream": False}

        def bare() -> None:
            b = create_backend("ollama", "llava:7b", host=url)
            b.load()
            for p in imgs:
                data = p.read_bytes()
                msgs = [Message("system", "s"), Message("user", "u", images=[data])]
                text = b.chat(msgs, GenerationOptions(max_tokens=600))
                msgs += [Message("assistant", text), Message("user", "labels")]
                b.chat(msgs, GenerationOptions(max_tokens=400, json_schema={"type": "object"}))
            b.unload()

        def draft(labels: bool, out: str) -> None:
            Path(out).unlink(missing_ok=True)
            report_draft(DraftParams(images=[args.images], labels=labels, output=out, **common))

        def resumed(out: str) -> None:
            report_draft(DraftParams(images=[args.images], labels=True, output=out, **common))

        def best(fn, *a) -> float:
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn(*a)
                times.append(time.perf_counter() - t)
            return min(times)

        out = str(Path(tmp) / "d.jsonl")
        anchor = best(bare)
        rows = [
            ("bare chats (anchor)", anchor),
            ("report_draft --labels + labeler", best(draft, True, out)),
            ("report_draft (no labels turn)", best(draft, False, out)),
            ("resumed: all done", best(resumed, out)),
        ]
    print(f"{len(imgs)} images, best of {args.repeat}")
    print(f"{'what':<38}{'s':>9}{'x anchor':>10}{'ms/image':>10}")
    for name, t in rows:
        print(f"{name:<38}{t:>9.3f}{t / anchor:>10.2f}{1000 * t / len(imgs):>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
