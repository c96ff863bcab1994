"""One loaded bundle: its verified manifest, one onnxruntime session per graph, and the numpy paths.

`ModelRuntime` is synchronous and CPU-bound (the routes run it off the event loop): encode (raw vectors ->
L_hat and counts), decode (counts -> reconstructions in original units), predict (label probabilities).
`load_runtime` refuses a bundle whole (BundleError) when its manifest, checksums, graph signatures,
execution provider or warm-up fail, so a model is served complete or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bundle import codes
from bundle.manifest import BundleError, Graph, Manifest, inside, load_manifest

log = logging.getLogger("sdlgm.service")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
WARMUP_BATCH = 4
RUN_ROWS = 64  # rows per onnxruntime run (SDLGM_MAX_RUN_ROWS): see ModelRuntime.run_rows

F32 = npt.NDArray[np.float32]
RunObserver = Callable[[str, str, float], None]  # (model, graph, seconds)


class ProviderError(RuntimeError):
    """The configured execution provider cannot be honoured; the service refuses to start."""


def choose_providers(provider: str, allow_cpu_fallback: bool) -> list[str]:
    """The onnxruntime provider list for SDLGM_PROVIDER; CPU last as onnxruntime's own fallback."""
    available = ort.get_available_providers()
    if provider == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if provider == "auto":
        return [CPU]
    if not allow_cpu_fallback:
        raise ProviderError(
            f"SDLGM_PROVIDER=cuda but this onnxruntime has no {CUDA} (it has {available}); install the "
            "gpu extra (onnxruntime-gpu) on a CUDA machine, or set SDLGM_PROVIDER=cpu or "
            "SDLGM_ALLOW_CPU_FALLBACK=true")
    log.warning("SDLGM_PROVIDER=cuda but onnxruntime has no %s (it has %s): serving on CPU", CUDA, available)
    return [CPU]


@dataclass(frozen=True)
class ModelRuntime:
    """A verified bundle with its sessions; `provider` is what onnxruntime really uses. A batch of more than
    `run_rows` rows (0: no cap) runs in slices of that many: every graph works row by row, so the answer is
    the same, and onnxruntime's CPU arena, which keeps the peak of the largest run, stays that of one slice
    (docs/serving.md, "Memory")."""

    name: str
    manifest: Manifest
    sessions: dict[str, ort.InferenceSession]
    provider: str
    observe: RunObserver
    run_rows: int = RUN_ROWS

    def _run(self, role: str, x: F32) -> npt.NDArray[np.float32]:
        graph: Graph = getattr(self.manifest.graphs, role)
        session, output = self.sessions[role], [graph.outputs[0]]
        step = self.run_rows or len(x)
        start = time.perf_counter()
        if len(x) <= step:
            out = np.asarray(session.run(output, {graph.input: x})[0])
        else:
            out = np.concatenate([session.run(output, {graph.input: x[i:i + step]})[0]
                                  for i in range(0, len(x), step)])
        self.observe(self.name, role, time.perf_counter() - start)
        return out

    @property
    def has_decoder(self) -> bool:
        return "decoder" in self.sessions

    def encode(self, x: F32, rng: np.random.Generator | None = None) -> tuple[codes.IntArray, codes.IntArray]:
        """(B, D) raw vectors -> (L_hat (B,), counts (B, K)); the deterministic code unless rng is given."""
        pi = self._run("encoder", x)  # (B, K) or (B, L0, K); (B, L0, symbols) when slots gate themselves
        if self.manifest.gate != "shared":
            symbols = codes.slot_mode(pi) if rng is None else codes.slot_sample(pi, rng)
            counts = self.manifest.code_space.counts(symbols)
            return counts.sum(1), counts
        lam = self._run("sparsity", x)  # (B, 2)
        if rng is None:
            return codes.deterministic_code(pi, lam, self.manifest.L0)
        return codes.stochastic_code(pi, lam, self.manifest.L0, rng)

    def sparsity_logits(self, x: F32) -> npt.NDArray[np.float32]:
        """(B, D) raw vectors -> (B, 2) the shared gate's logits (off, on); a shared-gate bundle only."""
        return self._run("sparsity", x)

    def decode(self, z: F32) -> F32:
        """(B, K) counts -> (B, D) reconstructions in original units."""
        return self._run("decoder", z)

    def predict(self, x: F32) -> tuple[codes.FloatArray, codes.IntArray]:
        """(B, D) features -> (P(label k in code) (B, K), predicted count L_hat (B,))."""
        pi = self._run("encoder", x)
        lam = self._run("sparsity", x)
        L0 = self.manifest.L0
        return codes.label_probability(pi, lam, L0), codes.binomial_mode(codes.gate_probability(lam), L0)

    def warm_up(self) -> None:
        """Run every graph once on a small batch (the first run of a session allocates its buffers)."""
        m = self.manifest
        mean = m.standardization.mean if m.standardization else [0.0] * m.D
        x = np.tile(np.asarray(mean, dtype=np.float32), (WARMUP_BATCH, 1))
        _, counts = self.encode(x)
        if self.has_decoder:
            x_hat = self.decode(counts.astype(np.float32))
            if x_hat.shape != (WARMUP_BATCH, m.D):
                raise BundleError(f"decoder gives shape {x_hat.shape}, expected {(WARMUP_BATCH, m.D)}")


def _ignore(model: str, graph: str, seconds: float) -> None:
    """A RunObserver that records nothing."""


def _check_signature(role: str, session: ort.InferenceSession, manifest: Manifest) -> None:
    graph = manifest.graphs.present()[role]
    inputs = session.get_inputs()
    outputs = [o.name for o in session.get_outputs()]
    if [i.name for i in inputs] != [graph.input] or graph.outputs[0] not in outputs:
        raise BundleError(f"{role} graph has inputs {[i.name for i in inputs]} and outputs {outputs}, the "
                          f"manifest says {graph.input} -> {graph.outputs}")
    width = manifest.K if role == "decoder" else manifest.D
    if inputs[0].shape[-1] != width:
        raise BundleError(f"{role} graph takes shape {inputs[0].shape}, expected (batch, {width})")


def load_runtime(name: str, bundle_dir: Path, providers: list[str], threads: tuple[int, int],
                 strict_provider: bool, observe: RunObserver, root: Path | None = None,
                 run_rows: int = RUN_ROWS) -> ModelRuntime:
    """Verify, load and warm up one bundle; any failure is a BundleError naming the cause. With root (the
    models directory), a file that leads out of it is refused (bundle.manifest.inside)."""
    manifest = load_manifest(bundle_dir, root)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads
    opts.log_severity_level = 3  # onnxruntime's warnings would interleave with our log lines
    sessions: dict[str, ort.InferenceSession] = {}
    for role, graph in manifest.graphs.present().items():
        data = inside(bundle_dir / graph.file, root).read_bytes()  # one read: the bytes checked are those loaded
        if hashlib.sha256(data).hexdigest() != graph.sha256:
            raise BundleError(f"{role} graph {graph.file} changed while the bundle was loaded: its SHA-256 is no "
                              "longer the manifest's")
        try:
            sessions[role] = ort.InferenceSession(data, sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise BundleError(f"{role} graph {graph.file} does not load in onnxruntime: {exc}") from exc
        _check_signature(role, sessions[role], manifest)
    used = sorted({s.get_providers()[0] for s in sessions.values()})
    if strict_provider and used != [providers[0]]:
        raise BundleError(f"onnxruntime fell back to {used} instead of {providers[0]} "
                          "(SDLGM_ALLOW_CPU_FALLBACK=false)")
    runtime = ModelRuntime(name, manifest, sessions, ",".join(used), observe, run_rows)
    try:
        replace(runtime, observe=_ignore).warm_up()  # warm-up runs stay out of the metrics
    except Exception as exc:  # a graph that loads but cannot run is refused like a bad checksum
        raise BundleError(f"warm-up failed: {exc}") from exc
    return runtime


def open_bundle(bundle_dir: Path, threads: tuple[int, int] = (0, 0)) -> ModelRuntime:
    """A bundle verified and loaded as the service loads it, on CPU and outside any metrics: what offline
    evaluation and benchmarks run (threads (0, 0): onnxruntime's own defaults)."""
    return load_runtime(bundle_dir.name, bundle_dir, [CPU], threads, False, _ignore)
