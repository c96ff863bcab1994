"""How long parsing a JSON body holds Python's GIL, the figure behind service/fastjson.py's design.

    python benchmarks/parse_hold.py

For each body (a 1024 x 80 batch of float32 vectors, 8 MB of short numbers, 8 MB of codes), parses and
validates it as the service does (pydantic_core.from_json, then the route's body model) in a thread while
the main thread sleeps 1 ms at a time, and prints the longest the main thread waited (the GIL held in
one piece: what an event loop would wait) and the whole parse, plus the time to count the body's commas
(the check the service makes first).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydantic_core

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.schemas import DecodeRequest, EncodeRequest  # noqa: E402


def bodies() -> dict[str, tuple[bytes, type[EncodeRequest] | type[DecodeRequest]]]:
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(1024, 80)) * 100).astype(np.float32)
    return {
        "1024 x 80 vectors": (json.dumps({"vectors": batch.tolist()}).encode(), EncodeRequest),
        "8 MB of short numbers": (b'{"vectors": [[' + b",".join([b"0"] * 4_000_000) + b"]]}", EncodeRequest),
        "8 MB of codes": (json.dumps({"fingerprint": "a" * 64, "codes": [{"binary": "cQo="}] * 400_000}).encode(),
                          DecodeRequest),
    }


def hold(work: Callable[[], object]) -> tuple[float, float]:
    """(the longest wait of the main thread, the whole time) while a thread does the work."""
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    thread = threading.Thread(target=run)
    gaps = []
    started = last = time.perf_counter()
    thread.start()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    thread.join()
    return max(gaps), time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print(f"{'body':24} {'MB':>5} {'GIL held (ms)':>14} {'parse (ms)':>11} {'count commas (ms)':>18}")
    for name, (body, model) in bodies().items():
        longest, whole = hold(lambda b=body, m=model: m.model_validate(pydantic_core.from_json(b, allow_inf_nan=True)))
        started = time.perf_counter()
        body.count(b",")
        count = time.perf_counter() - started
        print(f"{name:24} {len(body) / 1e6:5.1f} {1000 * longest:14.1f} {1000 * whole:11.1f} {1000 * count:18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
