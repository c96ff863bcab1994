"""Serving benchmark (`make bench`): each figure of the service as a ratio against a reference measured in
the same run, with wrk (Debian's package; `make bench-tools` installs it) as the HTTP load generator.

    python benchmarks/serve_bench.py [--quick] [--out docs/results/serving.json] [--doc docs/serving.md]

Figures (goals from issue 15):
  encode_single_json     POST /encode of one vector as JSON, req/s on --connections keep-alive connections,
                         against the bare FastAPI app benchmarks/ref_app.py (the same body, request model,
                         onnxruntime call and uvicorn settings): ratio >= 0.8
  encode_batch_binary    /encode of --batch-size float32 rows (application/octet-stream in, framed codes out
                         with Accept: application/octet-stream), vectors/s against raw onnxruntime in this
                         process on the same bundle, thread settings and batch: ratio >= 0.7
  encode_batch_v2        the same rows to POST /v2/models/<bundle>-encode/infer as a KServe V2 binary tensor,
                         every output binary (binary_data_output, as tritonclient asks): ratio >= 0.7
  encode_batch_json      the same rows as a JSON body: ratio >= 0.3
  concurrent_throughput  --concurrency connections, each sending one vector (JSON) after another, req/s
                         with SDLGM_BATCHING=true against a second server with SDLGM_BATCHING=false: >= 3
  concurrent_p99         the p99 latency of the same two runs, true against false: ratio <= 1 (no worse)
  rss_mb                 the service's resident memory after the load (one worker: the uvicorn process)
                         against the reference app's: value < 200 MB
  cold_start_s           process start until /readyz answers 200, median of --starts starts, against the
                         reference app's (its /readyz answers once its lifespan has loaded the bundle):
                         value < 3 s

"Raw onnxruntime" is bundle.runtime's ModelRuntime.encode called in this process, as the service calls
it: the bundle's onnxruntime sessions and the deterministic code from their outputs; no HTTP, no parsing,
no packing. Each HTTP figure is wrk (one thread) for --duration seconds after a --warmup run, repeated
--rounds times with the references measured in the same rounds; a figure is the median of its rounds and
its ratio that median over the reference's. Every body is first sent once and its answer checked against
the raw encoder's codes, and a wrk run that saw any error or status >= 400 stops the benchmark. Servers
and client share this machine's CPUs. Writes --out (figures, references, ratios, goals, whether met, the
machine, the commit, the settings) and, with --doc, the table between the markers in that file.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle import formats  # noqa: E402
from bundle.codes import IntArray, sparse_rows  # noqa: E402
from bundle.manifest import Manifest  # noqa: E402
from bundle.runtime import ModelRuntime, open_bundle  # noqa: E402
from service import binary, kserve  # noqa: E402
from service.v2models import padded  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from overload import stop  # noqa: E402

LUA = REPO / "benchmarks" / "wrk" / "post.lua"
REF_APP = REPO / "benchmarks" / "ref_app.py"
START_TIMEOUT_S = 60.0
WRK_PREFIX = "wrk-json: "
DOC_BEGIN = "<!-- serve_bench: begin (python benchmarks/serve_bench.py --doc docs/serving.md writes this table) -->"
DOC_END = "<!-- serve_bench: end -->"
NOTES = ["wrk (one thread), the servers and the raw onnxruntime loop share this machine's CPUs; the raw loop "
         "runs while the servers are idle.",
         "Other agents may have shared the CPU during the run (a shared development machine)."]


@dataclass(frozen=True)
class Goal:
    """What a figure must reach: its ratio or its value, compared with `target`."""

    on: str  # "ratio" or "value"
    op: str  # ">=", "<=" or "<"
    target: float

    def met(self, value: float, ratio: float) -> bool:
        x = ratio if self.on == "ratio" else value
        return x >= self.target if self.op == ">=" else x <= self.target if self.op == "<=" else x < self.target

    def text(self, unit: str) -> str:
        return f"ratio {self.op} {self.target:g}" if self.on == "ratio" else f"{self.op} {self.target:g} {unit}"


GOALS = {"encode_single_json": Goal("ratio", ">=", 0.8), "encode_batch_binary": Goal("ratio", ">=", 0.7),
         "encode_batch_v2": Goal("ratio", ">=", 0.7), "encode_batch_json": Goal("ratio", ">=", 0.3),
         "concurrent_throughput": Goal("ratio", ">=", 3.0), "concurrent_p99": Goal("ratio", "<=", 1.0),
         "rss_mb": Goal("value", "<", 200.0), "cold_start_s": Goal("value", "<", 3.0)}
FIGURES = tuple(GOALS)


@dataclass
class Figure:
    """One figure, its reference and their per-round measurements."""

    name: str
    what: str
    unit: str
    reference_what: str
    rounds: list[float] = field(default_factory=list)
    reference_rounds: list[float] = field(default_factory=list)
    detail: dict[str, list[float]] = field(default_factory=dict)  # per-round diagnostics (latency, CPU)

    def add(self, value: float, reference: float, **detail: float) -> None:
        self.rounds.append(value)
        self.reference_rounds.append(reference)
        for k, v in detail.items():
            self.detail.setdefault(k, []).append(v)

    def result(self) -> dict[str, Any]:
        value, reference = statistics.median(self.rounds), statistics.median(self.reference_rounds)
        ratio = value / reference
        goal = GOALS[self.name]
        return {"name": self.name, "what": self.what, "unit": self.unit, "value": value,
                "reference": {"what": self.reference_what, "value": reference}, "ratio": ratio,
                "goal": {**asdict(goal), "text": goal.text(self.unit)}, "met": goal.met(value, ratio),
                "rounds": self.rounds, "reference_rounds": self.reference_rounds,
                "detail": {k: [round(x, 4) for x in v] for k, v in self.detail.items()}}


# --- processes -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    started_s: float  # process start until /readyz answered 200


def service_command(bundle: Path, port: int, threads: int, batching: bool) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDLGM_")}
    env.update(SDLGM_MODELS_DIR=str(bundle.parent), SDLGM_MODELS=bundle.name, SDLGM_DEFAULT_MODEL=bundle.name,
               SDLGM_HOST="127.0.0.1", SDLGM_PORT=str(port), SDLGM_PROVIDER="cpu", SDLGM_WORKERS="1",
               SDLGM_INTRA_OP_THREADS=str(threads), SDLGM_INTER_OP_THREADS="1", SDLGM_LOG_LEVEL="warning",
               SDLGM_BATCHING=str(batching).lower())
    return [sys.executable, "-m", "service"], env


def ref_command(bundle: Path, port: int, threads: int) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDLGM_")}
    return [sys.executable, str(REF_APP), "--model-dir", str(bundle), "--port", str(port),
            "--threads", str(threads)], env




Command = Callable[[int], tuple[list[str], dict[str, str]]]  # port -> argv, environment


@contextmanager
def running(name: str, command: Command) -> Iterator[Server]:
    """The server started now on a free port and ready (its /readyz 200), stopped on exit; the time from
    its start until ready measured."""
    port = free_port()
    argv, env = command(port)
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise SystemExit(f"{name} exited with {proc.returncode} before it was ready:\n{err[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > START_TIMEOUT_S:
                raise SystemExit(f"{name} was not ready within {START_TIMEOUT_S} s")
            time.sleep(0.01)
        started = time.perf_counter() - start
        if proc.stderr is not None:  # nothing reads it from now on: do not let a full pipe block the server
            proc.stderr.close()
        yield Server(name, url, proc, started)
    finally:
        stop(proc, timeout_s=10.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process in MB (10^6 bytes)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values


# --- load -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A request body on disk for wrk, with its path, content type and headers."""

    path: str
    file: Path
    content_type: str
    headers: tuple[str, ...] = ()

    def content(self) -> bytes:
        return self.file.read_bytes()

    def header_map(self) -> dict[str, str]:
        pairs = (h.split(":", 1) for h in self.headers)
        return {"content-type": self.content_type, **{k.strip(): v.strip() for k, v in pairs}}


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float


def wrk_run(wrk: str, server: Server, body: Body, connections: int, seconds: int) -> Load:
    """wrk for `seconds` on `connections` connections (one thread); any error or status >= 400 stops the run."""
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
           server.url + body.path, "--", str(body.file), body.content_type, *body.headers]
    cpu = cpu_seconds(server.process.pid)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    cpu = cpu_seconds(server.process.pid) - cpu
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(WRK_PREFIX)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    out = json.loads(lines[-1].removeprefix(WRK_PREFIX))
    if any(out["errors"].values()) or not out["requests"]:
        raise SystemExit(f"wrk against {server.name} {body.path} saw errors {out['errors']} in {out['requests']} "
                         f"requests: the figures would be wrong; check the server ({' '.join(cmd)})")
    lat = out["latency_us"]
    return Load(out["requests"] / (out["duration_us"] / 1e6), lat["p50"] / 1e3, lat["p99"] / 1e3,
                cpu * 1e3 / out["requests"])


def raw_rate(encode: Callable[[np.ndarray], object], x: np.ndarray, seconds: float) -> float:
    """Vectors per second of encode(x) called back to back for about `seconds` (at least 3 calls)."""
    encode(x)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 3:
        encode(x)
        n += 1
    return n * len(x) / elapsed


# --- bodies and the check of their answers -------------------------------------------------------------------


def vectors(m: Manifest, n: int, seed: int = 0) -> np.ndarray:
    """n vectors around the training data: the manifest's standardization mean plus its std times N(0, 1)."""
    rng = np.random.default_rng(seed)
    if m.standardization is None:
        return rng.random((n, m.D)).astype(np.float32)
    mean, std = np.asarray(m.standardization.mean), np.asarray(m.standardization.std)
    return (mean + rng.normal(size=(n, m.D)) * std).astype(np.float32)


def v2_body(x: np.ndarray) -> tuple[bytes, int]:
    """A KServe V2 request of x as one binary FP32 tensor, every output asked in binary; its header length."""
    raw = x.astype("<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return head + raw, len(head)


def write_bodies(folder: Path, m: Manifest, single: np.ndarray, batch: np.ndarray) -> dict[str, Body]:
    v2, head = v2_body(batch)
    contents = {"single.json": json.dumps({"vector": single[0].tolist()}).encode(),
                "batch.json": json.dumps({"vectors": batch.tolist()}).encode(),
                "batch.f32": batch.astype("<f4").tobytes(), "batch.v2": v2}
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    octet = binary.OCTET_STREAM
    return {"single": Body("/encode", folder / "single.json", "application/json"),
            "json": Body("/encode", folder / "batch.json", "application/json"),
            "binary": Body("/encode", folder / "batch.f32", octet, (f"Accept: {octet}",)),
            "v2": Body(f"/v2/models/{m.name}-encode/infer", folder / "batch.v2", octet,
                       (f"{kserve.HEADER_LENGTH}: {head}",))}


def v2_outputs(content: bytes, header_length: int) -> dict[str, np.ndarray]:
    """The fixed-size binary outputs of a V2 response as arrays (BYTES outputs left out)."""
    head = json.loads(content[:header_length])
    out, at = {}, header_length
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        if o["datatype"] in kserve.DTYPES:
            out[o["name"]] = np.frombuffer(content[at:at + size], dtype=kserve.DTYPES[o["datatype"]]).reshape(o["shape"])
        at += size
    return out


def check_answer(server: Server, body: Body, counts: IntArray, m: Manifest) -> None:
    """One request of the body; its answer must be the raw encoder's codes (else the figures measure errors)."""
    r = httpx.post(server.url + body.path, content=body.content(), headers=body.header_map(), timeout=60)
    if r.status_code != 200:
        raise SystemExit(f"{server.name} answered {r.status_code} to {body.path}: {r.text[:300]}")
    if body.path != "/encode":
        got = v2_outputs(r.content, int(r.headers[kserve.HEADER_LENGTH]))
        indices, values = padded(counts, m.L0)
        same = np.array_equal(got["indices"], indices) and np.array_equal(got["counts"], values)
    elif body.content_type == binary.OCTET_STREAM:
        data, offsets = formats.pack_stream("v1", counts, m.code_space, m.entropy)
        same = r.content == binary.frame("v1", data, offsets)
    else:
        idx, cnt, at = (a.tolist() for a in sparse_rows(counts))
        want = [(idx[a:b], cnt[a:b]) for a, b in zip(at[:-1], at[1:], strict=True)]
        same = [(c["indices"], c["counts"]) for c in r.json()["codes"]] == want
    if not same:
        raise SystemExit(f"{server.name} {body.path} ({body.content_type}) answered other codes than the raw encoder")


# --- the run ----------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, bundle: Path, runtime: ModelRuntime, folder: Path) -> list[Figure]:
    m = runtime.manifest
    single, batch = vectors(m, 1, seed=1), vectors(m, args.batch_size, seed=2)
    bodies = write_bodies(folder, m, single, batch)
    B, conn = args.batch_size, args.connections
    figures = {
        "encode_single_json": Figure("encode_single_json", f"/encode, 1 vector (JSON), {conn} connection(s)",
                                     "req/s", "bare FastAPI app (benchmarks/ref_app.py), same body"),
        "encode_batch_binary": Figure("encode_batch_binary", f"/encode, {B} float32 rows (octet-stream) -> framed "
                                      "codes", "vectors/s", "raw onnxruntime in process, same batch"),
        "encode_batch_v2": Figure("encode_batch_v2", f"/v2/models/{m.name}-encode/infer, {B} rows as a binary "
                                  "tensor, binary outputs", "vectors/s", "raw onnxruntime in process, same batch"),
        "encode_batch_json": Figure("encode_batch_json", f"/encode, {B} vectors (JSON)", "vectors/s",
                                    "raw onnxruntime in process, same batch"),
        "concurrent_throughput": Figure("concurrent_throughput", f"{args.concurrency} connections, 1 vector (JSON) "
                                        "each, SDLGM_BATCHING=true", "req/s", "the same with SDLGM_BATCHING=false"),
        "concurrent_p99": Figure("concurrent_p99", f"{args.concurrency} connections, 1 vector (JSON) each, "
                                 "SDLGM_BATCHING=true, p99 latency", "ms", "the same with SDLGM_BATCHING=false"),
        "rss_mb": Figure("rss_mb", "service resident memory after the load (1 worker)", "MB",
                         "the bare FastAPI app after its load"),
        "cold_start_s": Figure("cold_start_s", "python -m service: process start until /readyz is 200", "s",
                               "the bare FastAPI app, the same"),
    }
    _, counts = runtime.encode(batch)
    _, one = runtime.encode(single)
    service, reference = (lambda port: service_command(bundle, port, args.threads, True),
                          lambda port: ref_command(bundle, port, args.threads))
    starts: dict[str, list[float]] = {"service": [], "reference": []}
    for _ in range(args.starts - 1):  # fresh processes, one at a time; the servers below give the last start
        for name, command in (("service", service), ("reference", reference)):
            with running(name, command) as server:
                starts[name].append(server.started_s)
    with ExitStack() as stack:  # started one after another, so that each start has the CPUs to itself
        srv = stack.enter_context(running("service", service))
        ref = stack.enter_context(running("reference", reference))
        alone = stack.enter_context(running("service (SDLGM_BATCHING=false)",
                                            lambda port: service_command(bundle, port, args.threads, False)))
        starts["service"].append(srv.started_s)
        starts["reference"].append(ref.started_s)
        for name in ("single", "json", "binary", "v2"):
            check_answer(srv, bodies[name], one if name == "single" else counts, m)
        check_answer(ref, bodies["single"], one, m)
        check_answer(alone, bodies["single"], one, m)

        def load(server: Server, body: str, connections: int, seconds: int = args.duration) -> Load:
            return wrk_run(args.wrk, server, bodies[body], connections, seconds)

        if args.warmup:
            for server, body, c in ((srv, "single", conn), (ref, "single", conn), (srv, "binary", conn),
                                    (srv, "v2", conn), (srv, "json", conn), (srv, "single", args.concurrency),
                                    (alone, "single", args.concurrency), (ref, "single", args.concurrency)):
                load(server, body, c, args.warmup)
        for _ in range(args.rounds):
            s, r = load(srv, "single", conn), load(ref, "single", conn)
            figures["encode_single_json"].add(s.rps, r.rps, p50_ms=s.p50_ms, reference_p50_ms=r.p50_ms,
                                              cpu_ms_per_request=s.cpu_ms_per_request,
                                              reference_cpu_ms_per_request=r.cpu_ms_per_request)
            for key, body in (("encode_batch_binary", "binary"), ("encode_batch_v2", "v2"),
                              ("encode_batch_json", "json")):
                raw = raw_rate(runtime.encode, batch, args.duration)  # right before its pair: same conditions
                b = load(srv, body, conn)
                figures[key].add(b.rps * B, raw, p50_ms=b.p50_ms, raw_ms_per_batch=B / raw * 1e3,
                                 cpu_ms_per_request=b.cpu_ms_per_request)
            on, off = load(srv, "single", args.concurrency), load(alone, "single", args.concurrency)
            bare = load(ref, "single", args.concurrency)  # context: the bare app (model on its loop), same load
            figures["concurrent_throughput"].add(on.rps, off.rps, cpu_ms_per_request=on.cpu_ms_per_request,
                                                 reference_cpu_ms_per_request=off.cpu_ms_per_request,
                                                 bare_app_rps=bare.rps)
            figures["concurrent_p99"].add(on.p99_ms, off.p99_ms, p50_ms=on.p50_ms, reference_p50_ms=off.p50_ms,
                                          bare_app_p99_ms=bare.p99_ms)
        srv_mem, ref_mem = memory_mb(srv.process.pid), memory_mb(ref.process.pid)
        figures["rss_mb"].add(srv_mem["VmRSS"], ref_mem["VmRSS"], peak_mb=srv_mem["VmHWM"],
                              reference_peak_mb=ref_mem["VmHWM"])
    for s_start, r_start in zip(starts["service"], starts["reference"], strict=True):
        figures["cold_start_s"].add(s_start, r_start)
    return list(figures.values())


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    packages = {name: installed(name) for name in ("onnxruntime", "fastapi", "uvicorn", "uvloop", "httptools")}
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "packages": packages,
            "load_average_at_start": list(os.getloadavg())}


def installed(name: str) -> str | None:
    """The installed version of a distribution (None when absent: uvicorn then falls back to asyncio, h11)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def number(v: float) -> str:
    """A figure as the table shows it: whole numbers from 100 up, else three significant digits."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def table(result: dict[str, Any]) -> str:
    """The figures as a markdown table, with the run's machine, commit, settings and notes under it."""
    lines = ["| figure | service | reference | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for f in result["figures"]:
        ref, unit = f["reference"], f["unit"]
        lines.append(f"| `{f['name']}`: {f['what']} | {number(f['value'])} {unit} | {number(ref['value'])} {unit}: "
                     f"{ref['what']} | {f['ratio']:.2f} | {f['goal']['text']} | {'yes' if f['met'] else '**no**'} |")
    mc, st = result["machine"], result["settings"]
    lines += ["", f"Measured {result['date']} at commit `{result['commit'][:12]}`"
              f"{' (with uncommitted changes)' if result['dirty'] else ''} on {mc['cpus']} CPUs ({mc['cpu_model']}): "
              f"{st['rounds']} round(s) of {st['duration_s']} s per figure after {st['warmup_s']} s of warm-up, "
              f"onnxruntime intra-op threads {st['intra_op_threads']}, batch {st['batch_size']}, {st['wrk']}. "
              + " ".join(result["notes"])]
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, text: str) -> None:
    content = doc.read_text()
    if DOC_BEGIN not in content or DOC_END not in content:
        raise SystemExit(f"{doc} has no {DOC_BEGIN!r} ... {DOC_END!r} markers to write the table between")
    head, rest = content.split(DOC_BEGIN, 1)
    doc.write_text(head + DOC_BEGIN + "\n" + text + DOC_END + rest.split(DOC_END, 1)[1])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=REPO / "models" / "kpi5g", help="bundle directory")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "serving.json")
    p.add_argument("--doc", type=Path, default=None, help="markdown file whose marked table to rewrite")
    p.add_argument("--duration", type=int, default=5, help="seconds of each wrk run and of each raw loop")
    p.add_argument("--warmup", type=int, default=1, help="seconds of wrk before the rounds, per run (0: none)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--starts", type=int, default=3, help="cold starts timed per server")
    p.add_argument("--connections", type=int, default=1, help="connections of the single and batch figures")
    p.add_argument("--concurrency", type=int, default=64, help="connections of the concurrent figures")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, every side")
    p.add_argument("--wrk", default="wrk", help="the wrk executable")
    p.add_argument("--note", action="append", default=[], help="a note for the result file (repeatable)")
    p.add_argument("--quick", action="store_true", help="1-s runs, one round, one start, no warm-up (a smoke test)")
    p.add_argument("--table-only", action="store_true", help="measure nothing: print the table of the result "
                   "file --out (and write it into --doc)")
    args = p.parse_args(argv)
    if args.table_only:
        text = table(json.loads(args.out.read_text()))
        if args.doc is not None:
            write_doc(args.doc, text)
        print(text, end="")
        return 0
    if args.quick:
        args.duration, args.warmup, args.rounds, args.starts = 1, 0, 1, 1
    wrk = shutil.which(args.wrk)
    if wrk is None:
        raise SystemExit(f"wrk ({args.wrk!r}) is not installed: `make bench-tools` installs it from Debian "
                         "(apt-get install -y wrk)")
    args.wrk = wrk
    bundle = args.model_dir.resolve()
    commit, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    started = time.perf_counter()
    runtime = open_bundle(bundle, (args.threads, 1))
    info = machine()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as folder:
        figures = measure(args, bundle, runtime, Path(folder))
    info["load_average_at_end"] = list(os.getloadavg())
    version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()
    result = {
        "figures": [f.result() for f in figures], "machine": info, "commit": commit, "dirty": dirty,
        "date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - started, 1),
        "settings": {"bundle": bundle.name, "duration_s": args.duration, "warmup_s": args.warmup,
                     "rounds": args.rounds, "starts": args.starts, "connections": args.connections,
                     "concurrency": args.concurrency, "batch_size": args.batch_size,
                     "intra_op_threads": args.threads, "inter_op_threads": 1, "workers": 1,
                     "wrk": f"{version[0].split(' Copyright')[0] if version else 'wrk'}, 1 thread", "quick": args.quick,
                     "service_env": {k: v for k, v in service_command(bundle, 0, args.threads, True)[1].items()
                                     if k.startswith("SDLGM_") and k not in ("SDLGM_PORT", "SDLGM_MODELS_DIR")}},
        "notes": NOTES + args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    if args.doc is not None:
        write_doc(args.doc, text)
    print(text, end="")
    print(f"serve_bench: {result['seconds']:.0f} s; wrote {args.out}" + (f" and {args.doc}" if args.doc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
