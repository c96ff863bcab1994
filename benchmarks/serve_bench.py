"""Serving benchmark: the real server against raw onnxruntime in process, on the same bundle.

    python benchmarks/serve_bench.py --model-dir models/kpi5g

Starts `python -m service` (uvicorn) on a free loopback port serving only that bundle, then measures
(after warm-up, sequential requests on one keep-alive connection, request bodies serialized once):
  - /encode of one vector: p50 and p99 latency over --single requests;
  - /encode of batches of --batch-size vectors: vectors per second over --batches requests;
and the same two with onnxruntime in this process (encoder + sparsity graphs + the deterministic code,
same thread settings). Prints a table with the ratio service / raw. Client and server share this
machine's CPUs; the service runs with SDLGM_LOG_LEVEL=warning (no access log).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.manifest import Manifest, load_manifest  # noqa: E402
from bundle.runtime import open_bundle  # noqa: E402

START_TIMEOUT_S = 60.0


def vectors(m: Manifest, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if m.standardization is None:
        return rng.random((n, m.D)).astype(np.float32)
    mean, std = np.asarray(m.standardization.mean), np.asarray(m.standardization.std)
    return (mean + rng.normal(size=(n, m.D)) * std).astype(np.float32)


def timings(fn: Callable[[int], None], n: int, warmup: int) -> np.ndarray:
    """Seconds of each of n calls fn(i), after `warmup` calls."""
    for i in range(warmup):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - start
    return out


def raw_encoder(bundle: Path, threads: int) -> Callable[[np.ndarray], object]:
    """The service's own encode (graphs + deterministic code) called directly: no HTTP, no JSON."""
    return open_bundle(bundle, (threads, 1)).encode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bundle: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDLGM_")}
    env.update(SDLGM_MODELS_DIR=str(bundle.parent), SDLGM_MODELS=bundle.name, SDLGM_DEFAULT_MODEL=bundle.name,
               SDLGM_HOST="127.0.0.1", SDLGM_PORT=str(port), SDLGM_PROVIDER="cpu",
               SDLGM_INTRA_OP_THREADS=str(threads), SDLGM_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not become ready within {START_TIMEOUT_S} s")


def post(client: httpx.Client, body: bytes) -> None:
    r = client.post("/encode", content=body, headers={"content-type": "application/json"})
    if r.status_code != 200:
        raise SystemExit(f"/encode answered {r.status_code}: {r.text[:300]}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=REPO / "models" / "kpi5g", help="bundle directory")
    p.add_argument("--single", type=int, default=500, help="single-vector requests timed")
    p.add_argument("--batches", type=int, default=40, help="batch requests timed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, both sides")
    args = p.parse_args(argv)
    bundle = args.model_dir.resolve()
    m = load_manifest(bundle)
    singles = vectors(m, args.single + args.warmup, seed=1)
    batches = [vectors(m, args.batch_size, seed=2 + i) for i in range(4)]

    raw = raw_encoder(bundle, args.threads)
    raw_one = timings(lambda i: raw(singles[i : i + 1]), args.single, args.warmup)
    raw_batch = timings(lambda i: raw(batches[i % 4]), args.batches, 5)

    one_bodies = [json.dumps({"vector": v.tolist()}).encode() for v in singles]
    batch_bodies = [json.dumps({"vectors": b.tolist()}).encode() for b in batches]
    port = free_port()
    proc = start_server(bundle, port, args.threads)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            srv_one = timings(lambda i: post(client, one_bodies[i]), args.single, args.warmup)
            srv_batch = timings(lambda i: post(client, batch_bodies[i % 4]), args.batches, 5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    rows = [
        ("encode 1 vector, p50 (ms)", np.percentile(srv_one, 50) * 1e3, np.percentile(raw_one, 50) * 1e3),
        ("encode 1 vector, p99 (ms)", np.percentile(srv_one, 99) * 1e3, np.percentile(raw_one, 99) * 1e3),
        (f"batch of {args.batch_size}, p50 (ms)", np.percentile(srv_batch, 50) * 1e3,
         np.percentile(raw_batch, 50) * 1e3),
        (f"batch of {args.batch_size}, vectors/s", args.batch_size / srv_batch.mean(),
         args.batch_size / raw_batch.mean()),
    ]
    print(f"bundle {bundle} (D={m.D}, K={m.K}, L0={m.L0}); {os.cpu_count()} CPUs; "
          f"{args.single} single and {args.batches} batch requests; intra-op threads {args.threads}")
    print(f"{'':32}{'service':>12}{'raw ort':>12}{'service/raw':>14}")
    for name, srv, base in rows:
        print(f"{name:32}{srv:12.3f}{base:12.3f}{srv / base:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
