"""Soak: a long run of mixed requests against a real `python -m service`, for errors, tail latency and leaks.

    python benchmarks/soak.py [--requests 100000] [--connections 16] [--warmup-s 15] [--out docs/results/soak.json]

Serves two bundles from a models directory: the committed default `kpi5g` and a supervised `emotions`
bundle trained here for a few iterations (or both from --models-dir). The load is wrk (Debian's) with
benchmarks/wrk/mix.lua cycling four kinds of request, each checked to answer 200 first:
`/encode` with one vector, `/encode` with a batch of 64, `/decode` of 8 codes the service made, and
`/predict?model=emotions` with 8 vectors. After --warmup-s seconds of the mix (whose memory growth is
the allocators settling and does not count) the service's RSS is read, then at least --requests requests
run at --connections connections (wrk runs are bounded by time: the warm-up's rate sizes them), then RSS
again. Prints and writes: the answers by status, wrk's transport errors (goal: 0
errors of any kind), latency p50/p99/p99.9/max over all kinds, requests/s, RSS before and after with the
growth (goal: under 5%), and whether the service is healthy after. Client and service share this
machine's CPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from overload import free_port, get, json_batch, rss_mb, stop, wait_ready  # noqa: E402

MIX = REPO / "benchmarks" / "wrk" / "mix.lua"
GOAL_RSS_GROWTH = 0.05
JSON = "application/json"


def build_models(root: Path) -> Path:
    """A models directory with a copy of the committed kpi5g and an emotions bundle trained for 60 steps."""
    from training.cli import main

    models = root / "models"
    shutil.copytree(REPO / "models" / "kpi5g", models / "kpi5g")
    run = root / "runs" / "emotions"
    for args in (["train", "--config", str(REPO / "configs" / "emotions-dis.yaml"), "--out", str(run), "--set",
                  "train.iterations=60", "--set", "train.eval_every=60", "--no-progress"],
                 ["export", "--run", str(run), "--out", str(models / "emotions"), "--name", "emotions"]):
        if main(args) != 0:  # not an assert: python -O would skip it
            raise RuntimeError(f"sdlgm {args[0]} of the emotions bundle failed")
    return models


def request_kinds(models: Path, port: int, bodies: Path) -> list[tuple[str, str, Path]]:
    """The (path, content type, body file) of each request kind, each checked to answer 200."""
    encode_1 = json_batch(models, "kpi5g", 1, seed=1)
    encode_64 = json_batch(models, "kpi5g", 64, seed=2)
    status, answer = get("127.0.0.1", port, "/encode", json_batch(models, "kpi5g", 8, seed=3))
    if status != 200:
        raise RuntimeError(f"/encode answered {status}: {answer[:300]!r}")
    made = json.loads(answer)
    decode = json.dumps({"fingerprint": made["fingerprint"],
                         "codes": [{"indices": c["indices"], "counts": c["counts"]} for c in made["codes"]]}).encode()
    predict = json_batch(models, "emotions", 8, seed=4)
    kinds = [("/encode", encode_1), ("/encode", encode_64), ("/decode", decode), ("/predict?model=emotions", predict)]
    out = []
    for i, (path, body) in enumerate(kinds):
        status, answer = get("127.0.0.1", port, path, body)
        if status != 200:
            raise RuntimeError(f"{path} answered {status} before the soak: {answer[:300]!r}")
        f = bodies / f"kind{i}.json"
        f.write_bytes(body)
        out.append((path, JSON, f))
    return out


def wrk(port: int, connections: int, seconds: float, kinds: list[tuple[str, str, Path]]) -> dict[str, Any]:
    """One wrk run of `seconds` over the kinds; mix.lua's figures."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, math.ceil(seconds))}s", "--timeout", "30s", "-s", str(MIX),
            f"http://127.0.0.1:{port}", "--"]
    for path, ctype, body in kinds:
        args += [path, ctype, str(body)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("wrk-json: ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(line.removeprefix("wrk-json: ")))


def run_count(port: int, connections: int, requests: int, rate: float,
              kinds: list[tuple[str, str, Path]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """At least `requests` answers: one wrk run sized from `rate` (answers/s) with a tenth to spare, then
    shorter runs until the count is reached (wrk's runs are bounded by time, not count). The first run's
    figures and every run's."""
    runs = [wrk(port, connections, 1.1 * requests / rate, kinds)]
    while sum(r["requests"] for r in runs) < requests:
        missing = requests - sum(r["requests"] for r in runs)
        runs.append(wrk(port, connections, 1.1 * missing / rate + 1, kinds))
    return runs[0], runs


def errors_of(figures: dict[str, Any]) -> int:
    """Transport errors plus answers that are not 200."""
    e = figures["errors"]
    transport = e["connect"] + e["read"] + e["write"] + e["timeout"]
    return int(transport + sum(n for s, n in figures["statuses"].items() if s != "200"))


def soak(models: Path, requests: int, connections: int, warmup_s: float) -> dict[str, Any]:
    port = free_port()
    settings = {"MODELS": "kpi5g,emotions", "DEFAULT_MODEL": "kpi5g", "PROVIDER": "cpu", "INTRA_OP_THREADS": "2",
                "INTER_OP_THREADS": "1", "LOG_LEVEL": "warning"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDLGM_")}
    env.update({f"SDLGM_{k}": v for k, v in settings.items()}, SDLGM_MODELS_DIR=str(models),
               SDLGM_HOST="127.0.0.1", SDLGM_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    try:
        wait_ready("127.0.0.1", port, proc)
        with tempfile.TemporaryDirectory() as bodies:
            kinds = request_kinds(models, port, Path(bodies))
            shown = [f"{path} ({body.stat().st_size} B)" for path, _, body in kinds]
            rss_start = rss_mb(proc.pid)
            warm = wrk(port, connections, warmup_s, kinds)
            rate = warm["requests"] / (warm["duration_us"] / 1e6)
            rss_before = rss_mb(proc.pid)
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            first, runs = run_count(port, connections, requests, rate, kinds)
            took = time.perf_counter() - started
            rss_after = rss_mb(proc.pid)
        healthy = get("127.0.0.1", port, "/healthz")[0] == 200 and get("127.0.0.1", port, "/readyz")[0] == 200
    finally:
        stop(proc)
    lat = first["latency_us"]
    growth = (rss_after - rss_before) / rss_before
    statuses: Counter[str] = Counter()
    transport: Counter[str] = Counter()
    for r in runs:
        statuses.update(r["statuses"])
        transport.update(r["errors"])
    errors = sum(errors_of(r) for r in runs)
    total = sum(r["requests"] for r in runs)
    return {
        "requests": total, "connections": connections, "wrk_runs": len(runs), "warmup_requests": warm["requests"],
        "warmup_s": warmup_s, "kinds": shown,
        "statuses": dict(statuses), "transport_errors": dict(transport), "errors": errors,
        "warmup_errors": errors_of(warm),
        "requests_per_s": round(total / took, 1),
        "latency_ms_of": f"the first wrk run ({first['requests']} requests)",
        "latency_ms": {"p50": lat["p50"] / 1000, "p99": lat["p99"] / 1000, "p99_9": lat["p99_9"] / 1000,
                       "max": lat["max"] / 1000},
        "rss_mb": {"start": round(rss_start, 1), "before": round(rss_before, 1), "after": round(rss_after, 1)},
        "rss_growth": round(growth, 4), "goal_rss_growth": GOAL_RSS_GROWTH,
        "met": {"errors": errors == 0, "rss_growth": growth < GOAL_RSS_GROWTH, "healthy_after": healthy},
        "healthy_after": healthy, "settings": settings, "cpus": os.cpu_count(),
        "machine_load_1min": {"before": round(load_before, 1), "after": round(os.getloadavg()[0], 1)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--warmup-s", type=float, default=15.0,
                    help="seconds of the mix before RSS is read (and whose rate sizes the run)")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="a models directory holding kpi5g and emotions (default: built in a temporary directory)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("soak: wrk is missing (make bench-tools installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models_dir.resolve() if args.models_dir else build_models(Path(tmp))
        figures = soak(models, args.requests, args.connections, args.warmup_s)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if all(figures["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
