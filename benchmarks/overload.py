"""Overload: many clients sending large JSON batches at once against a real `python -m service`.

    python benchmarks/overload.py [--clients 256] [--vectors 1024] [--seconds 30] [--out docs/results/overload.json]

Starts the service on a free loopback port over one bundle (default models/kpi5g, with the compose
deployment's thread settings), then runs for --seconds: --clients connections, each sending `/encode`
with a JSON batch of --vectors vectors back to back on its keep-alive connection (reconnecting when the
service closes it; after a 503 waiting its Retry-After, unless --no-backoff), a liveness probe in a process of its own (as the kubelet is) that opens a fresh connection for `GET /healthz`
every PROBE_S (a second one does the same on the probe port, SDLGM_PROBE_PORT, a free port unless
`--set PROBE_PORT=` turns it off: `healthz_probe_port`), and a
sampler of the service's resident memory (VmRSS from /proc, and its peak VmHWM). Prints and writes: the
answers by status, transport errors, /healthz latency (p50, p99, max), the CPU seconds of the service, of
its event loop's thread and of the clients (figures that a busy machine disturbs less than latencies),
RSS before, peak and after, and
whether the service is healthy after (a /healthz and one small /encode), and the machine's load average
before and after. The service's settings are its defaults unless --set NAME=VALUE gives others. Client and
service share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle.manifest import load_manifest  # noqa: E402

START_TIMEOUT_S = 60.0
PROBE_S = 0.05
SAMPLE_S = 0.1
READ_TIMEOUT_S = 60.0


def json_batch(models_dir: Path, model: str, n: int, seed: int = 0) -> bytes:
    """A JSON /encode body of n vectors drawn around the bundle's standardization (raw units)."""
    m = load_manifest(models_dir / model)
    rng = np.random.default_rng(seed)
    mean = np.asarray(m.standardization.mean) if m.standardization else np.zeros(m.D)
    std = np.asarray(m.standardization.std) if m.standardization else np.ones(m.D)
    x = (mean + rng.normal(size=(n, m.D)) * std).astype(np.float32)
    return json.dumps({"vectors": x.tolist()}).encode()


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: sdlgm\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes,
                   tally: Tally | None = None) -> tuple[int, dict[str, str]]:
    """Send one request, read its answer; (status, headers). As curl does, a send cut short by the service
    (it answered before reading the whole body: a shed request's 503) still reads the answer that came, and
    counts the cut in tally.cut_sends; with no answer there, the send's error is raised."""
    writer.write(raw)
    cut = False
    try:
        await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        if tally is None:
            raise
        cut = True
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    if cut and tally is not None:
        tally.cut_sends += 1
    return status, headers


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    healthz_s: list[float] = field(default_factory=list)
    healthz_failed: int = 0
    cut_sends: int = 0  # sends the service cut short by answering first, whose answer was read


async def client(host: str, port: int, raw: bytes, stop_at: float, tally: Tally, backoff: bool) -> None:
    """Requests back to back on one keep-alive connection until stop_at, reconnecting when it closes; after
    a 503, with backoff, the client waits its Retry-After first (as client/ does)."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            tally.errors[f"connect: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < stop_at:
                status, headers = await asyncio.wait_for(exchange(reader, writer, raw, tally), READ_TIMEOUT_S)
                tally.statuses[status] += 1
                if backoff and status == 503:
                    await asyncio.sleep(float(headers.get("retry-after", "0")))
                if headers.get("connection", "").lower() == "close":
                    break
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
        finally:
            writer.close()


def probe(host: str, port: int, seconds: float, out: Any) -> None:
    """GET /healthz on a fresh connection every PROBE_S for `seconds`, as a liveness probe does, in a process
    of its own (as the kubelet is), so that the clients' event loop does not add its lag to the figure;
    puts (latencies in s, failures) on `out`."""
    raw = b"GET /healthz HTTP/1.1\r\nhost: sdlgm\r\nconnection: close\r\n\r\n"
    latencies: list[float] = []
    failed = 0
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=READ_TIMEOUT_S) as conn:
                conn.sendall(raw)
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
            if answer.startswith(b"HTTP/1.1 200"):
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1
        except OSError:
            failed += 1
        time.sleep(PROBE_S)
    out.put((latencies, failed))


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """A /proc/PID/status memory field of the process, in MB (2^20 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field_name} for process {pid}")


class Sampler(threading.Thread):
    """The process's RSS every SAMPLE_S, in a thread, until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [rss_mb(pid)], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            self.samples.append(rss_mb(self.pid))


def cpu_s(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system) of the process, or of one of its threads (the main thread: tid = pid,
    the event loop's)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def probe_figures(latencies: list[float], failed: int) -> dict[str, Any]:
    return {"probes": len(latencies) + failed, "failed": failed,
            "p50_ms": round(1000 * percentile(latencies, 50), 1),
            "p99_ms": round(1000 * percentile(latencies, 99), 1),
            "max_ms": round(1000 * max(latencies, default=float("nan")), 1)}


def run_load(host: str, port: int, pid: int, clients: int, body: bytes, seconds: float,
             backoff: bool = True, probe_port: int | None = None) -> dict[str, Any]:
    """The load of the module docstring against a running service; its figures. With probe_port, /healthz
    is probed there too, by a second process at the same pace (`healthz_probe_port`)."""
    tally = Tally()
    raw = post("/encode", body)
    sampler = Sampler(pid)
    before = sampler.samples[0]
    sampler.start()

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(client(host, port, raw, stop_at, tally, backoff) for _ in range(clients)))

    spawn = multiprocessing.get_context("spawn")
    probes: Any = spawn.Queue()
    prober = spawn.Process(target=probe, args=(host, port, seconds, probes), daemon=True)
    prober.start()
    side: Any = spawn.Queue()
    side_prober = None if probe_port is None else spawn.Process(target=probe, args=(host, probe_port, seconds, side),
                                                                daemon=True)
    if side_prober is not None:
        side_prober.start()
    started = time.perf_counter()
    cpu_before = (cpu_s(pid), cpu_s(pid, pid), time.process_time())
    asyncio.run(main())
    took = time.perf_counter() - started
    cpu = (cpu_s(pid) - cpu_before[0], cpu_s(pid, pid) - cpu_before[1], time.process_time() - cpu_before[2])
    tally.healthz_s, tally.healthz_failed = probes.get(timeout=READ_TIMEOUT_S + 10)
    prober.join(timeout=10)
    side_figures = None
    if side_prober is not None:
        side_figures = probe_figures(*side.get(timeout=READ_TIMEOUT_S + 10))
        side_prober.join(timeout=10)
    sampler.stop.set()
    sampler.join()
    answered = sum(tally.statuses.values())
    return {
        "clients": clients, "backoff": backoff, "body_bytes": len(body), "seconds": round(took, 1),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "transport_errors": dict(tally.errors), "answers_per_s": round(answered / took, 1),
        "sends_cut_short_answer_read": tally.cut_sends,
        "healthz": probe_figures(tally.healthz_s, tally.healthz_failed),
        **({"healthz_probe_port": side_figures} if side_figures is not None else {}),
        "cpu_s": {"service": round(cpu[0], 1), "service_event_loop_thread": round(cpu[1], 1),
                  "clients": round(cpu[2], 1),
                  "service_ms_per_answer": round(1000 * cpu[0] / max(answered, 1), 2),
                  "event_loop_ms_per_answer": round(1000 * cpu[1] / max(answered, 1), 2)},
        "rss_mb": {"before": round(before, 1), "peak_sampled": round(max(sampler.samples), 1),
                   "peak_vmhwm": round(rss_mb(pid, "VmHWM"), 1), "after": round(rss_mb(pid), 1)},
    }


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (the service drains), then SIGKILL when it has not exited within timeout_s: no service is
    left behind."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url_host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        if get(url_host, port, "/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise RuntimeError("the service was not ready in time")


def get(host: str, port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body), or (0, b"") when it fails."""
    import http.client

    try:
        c = http.client.HTTPConnection(host, port, timeout=30)
        c.request("POST" if body is not None else "GET", path, body=body,
                  headers={"content-type": "application/json"} if body is not None else {})
        r = c.getresponse()
        out = (r.status, r.read())
        c.close()
        return out
    except OSError:
        return 0, b""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--model", default="kpi5g")
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--vectors", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-backoff", action="store_true", help="clients send again at once after a 503 (a flood) "
                    "instead of waiting its Retry-After")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a service setting, e.g. --set QUEUE_MAX_VECTORS=2048 (SDLGM_ prefix implied)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    shown_dir = args.models_dir.resolve()
    shown = str(shown_dir.relative_to(REPO)) if shown_dir.is_relative_to(REPO) else str(shown_dir)
    settings = {"MODELS_DIR": shown, "MODELS": args.model, "DEFAULT_MODEL": args.model,
                "PROVIDER": "cpu", "INTRA_OP_THREADS": "2", "INTER_OP_THREADS": "1", "LOG_LEVEL": "warning"}
    settings.update(dict(s.split("=", 1) for s in args.set))
    port = free_port()
    settings.setdefault("PROBE_PORT", str(free_port()))
    probe_port = int(settings["PROBE_PORT"]) if settings["PROBE_PORT"] else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDLGM_")}
    env.update({f"SDLGM_{k}": v for k, v in settings.items()}, SDLGM_MODELS_DIR=str(shown_dir), SDLGM_HOST="127.0.0.1",
               SDLGM_PORT=str(port))
    body = json_batch(args.models_dir, args.model, args.vectors)
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    try:
        wait_ready("127.0.0.1", port, proc)
        load_before = os.getloadavg()[0]
        figures = run_load("127.0.0.1", port, proc.pid, args.clients, body, args.seconds, not args.no_backoff,
                           probe_port)
        figures["machine_load_1min"] = {"before": round(load_before, 1), "after": round(os.getloadavg()[0], 1)}
        small = json_batch(args.models_dir, args.model, 1)
        figures["healthy_after"] = (get("127.0.0.1", port, "/healthz")[0] == 200
                                    and get("127.0.0.1", port, "/encode", small)[0] == 200)
    finally:
        stop(proc)
    figures = {"model": args.model, "vectors_per_request": args.vectors, "settings": settings,
               "cpus": os.cpu_count(), **figures}
    ok = figures["statuses"].get("200", 0) * args.vectors
    figures["vectors_per_s_encoded"] = round(ok / figures["seconds"], 1)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
