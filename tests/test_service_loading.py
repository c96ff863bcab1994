"""Loading, with the app in this process (its lifespan loads the bundles): bundles that fail verification
are refused whole with one log line (a changed byte, a re-signed graph that onnxruntime cannot read, a
missing directory), readiness follows SDLGM_MODELS, the provider setting is honoured or refused (a real
`python -m service` for the refusal's exit status), and an inference timeout answers 503 and leaves the
app healthy."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from conftest import REPO, free_port, open_app, server_env, settings_of

from bundle.manifest import Graphs, fingerprint_of, sha256_file

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
cpu_only = pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")


@pytest.fixture(scope="module")
def mixed_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good bundles, plus kpi5g-tampered (one byte of its encoder changed) and kpi5g-resigned (a truncated
    decoder whose checksum and fingerprint were rewritten, so only onnxruntime can tell)."""
    root = tmp_path_factory.mktemp("mixed")
    for name in ("kpi5g", "emotions", "kpi5g-tampered", "kpi5g-resigned"):
        shutil.copytree(models_dir / name.split("-")[0], root / name)
    enc = next((root / "kpi5g-tampered").glob("encoder-*.onnx"))
    data = bytearray(enc.read_bytes())
    data[len(data) // 2] ^= 0x01
    enc.write_bytes(bytes(data))
    bundle = root / "kpi5g-resigned"
    dec = next(bundle.glob("decoder-*.onnx"))
    dec.write_bytes(dec.read_bytes()[:1000])
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["graphs"]["decoder"]["sha256"] = sha256_file(dec)
    raw["fingerprint"] = fingerprint_of(Graphs.model_validate(raw["graphs"]), raw.get("entropy_model"))
    (bundle / "manifest.json").write_text(json.dumps(raw))
    return root


def _refusals(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if f"refused bundle {name!r}" in r.getMessage()]


def test_bad_bundles_are_refused_whole_and_the_rest_is_served(mixed_dir: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with open_app(settings_of(models_dir=mixed_dir)) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text  # the refused bundles were found, not asked for
        assert ready.json()["models"] == ["emotions", "kpi5g"]
        assert sorted(ready.json()["refused"]) == ["kpi5g-resigned", "kpi5g-tampered"]
        assert [m["name"] for m in c.get("/v1/models").json()["models"]] == ["emotions", "kpi5g"]
        r = c.post("/encode", params={"model": "kpi5g-tampered"}, json={"vector": [0.0] * 80})
        assert r.status_code == 404
        assert r.json()["kind"] == "unknown_model"
        assert r.json()["error"].startswith("model 'kpi5g-tampered' is not loaded (refused: ")
    [tampered] = _refusals(caplog, "kpi5g-tampered")
    message = tampered.getMessage()
    assert tampered.levelname == "ERROR" and "encoder graph encoder-" in message and "manifest says" in message
    [resigned] = _refusals(caplog, "kpi5g-resigned")
    assert "decoder graph decoder-" in resigned.getMessage()
    assert "does not load in onnxruntime" in resigned.getMessage()


def test_a_listed_bundle_that_fails_keeps_the_app_unready(mixed_dir: Path) -> None:
    with open_app(settings_of(models_dir=mixed_dir, models="kpi5g, kpi5g-tampered,ghost")) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["models"] == ["kpi5g"]
        [tampered, ghost] = sorted(body["reasons"], key=lambda s: "ghost" in s)
        assert tampered.startswith("model 'kpi5g-tampered' is not loaded: ") and "SHA-256" in tampered
        assert ghost == "model 'ghost' is not loaded: no bundle directory 'ghost' in SDLGM_MODELS_DIR"
        assert [m["name"] for m in c.get("/v1/models").json()["models"]] == ["kpi5g"]  # emotions not listed
        assert c.post("/encode", json={"vector": [0.0] * 80}).status_code == 200


@cpu_only
def test_cuda_without_fallback_refuses_to_start(models_dir: Path) -> None:
    env = server_env({"SDLGM_MODELS_DIR": str(models_dir), "SDLGM_PROVIDER": "cuda",
                      "SDLGM_ALLOW_CPU_FALLBACK": "false"}, free_port())
    done = subprocess.run([sys.executable, "-m", "service"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "SDLGM_PROVIDER=cuda but this onnxruntime has no CUDAExecutionProvider" in done.stderr
    assert "set SDLGM_PROVIDER=cpu or SDLGM_ALLOW_CPU_FALLBACK=true" in done.stderr


@cpu_only
def test_cuda_with_fallback_serves_on_cpu_and_says_so(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open_app(settings_of(models_dir=models_dir, models="emotions", default_model="emotions",
                              provider="cuda")) as c:
        listing = c.get("/v1/models").json()
    assert listing["default"] == "emotions"
    assert [(m["name"], m["provider"]) for m in listing["models"]] == [("emotions", "CPUExecutionProvider")]
    [warning] = [r for r in caplog.records if "SDLGM_PROVIDER=cuda" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith("SDLGM_PROVIDER=cuda but onnxruntime has no CUDAExecutionProvider")


def test_an_inference_timeout_answers_503_and_the_app_stays_healthy(models_dir: Path) -> None:
    settings = settings_of(models_dir=models_dir, models="emotions", default_model="emotions",
                           request_timeout_s=0.000001)  # a time limit nothing can meet
    with open_app(settings) as c:
        r = c.post("/predict", json={"vectors": [[0.0] * 72] * 300})
        assert r.status_code == 503
        assert r.json() == {"kind": "timeout", "error": "the request took longer than the request timeout of 1e-06 s "
                            "(SDLGM_REQUEST_TIMEOUT_S: reading, parsing, queueing, inference and answering); retry "
                            "later or with a smaller batch"}
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert 'sdlgm_errors_total{kind="timeout"} 1.0' in c.get("/metrics").text
        assert c.post("/predict", json={"vector": [0.0] * 72}).status_code == 503  # still answering, still bounded


def test_a_graph_changed_after_its_check_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes onnxruntime loads are the bytes whose SHA-256 was checked: a graph replaced between the
    manifest's check and the load (a copy over a served bundle) is refused, not loaded unverified."""
    import bundle.runtime as runtime_module
    from bundle.manifest import BundleError, Manifest

    bundle_dir = tmp_path / "kpi5g"
    shutil.copytree(REPO / "models" / "kpi5g", bundle_dir)
    checked = runtime_module.load_manifest

    def then_changed(directory: Path, root: Path | None = None) -> Manifest:
        manifest = checked(directory, root)
        graph = directory / next(iter(manifest.graphs.present().values())).file
        data = bytearray(graph.read_bytes())
        data[-1] ^= 1
        graph.write_bytes(bytes(data))
        return manifest

    monkeypatch.setattr(runtime_module, "load_manifest", then_changed)
    with pytest.raises(BundleError, match="changed while the bundle was loaded: its SHA-256 is no longer"):
        runtime_module.load_runtime("kpi5g", bundle_dir, ["CPUExecutionProvider"], (1, 1), False,
                                    lambda *_: None)
