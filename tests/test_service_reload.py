"""Hot reload (docs/reload.md) over copies of the committed default bundle, made different or broken on
disk: in this process through POST /admin/reload (a replaced bundle swapped in; each way a bundle can be
refused, a recursion and an I/O error among them, leaving the served one answering with its fingerprint,
listed in /v1/models and sdlgm_model_refused; symlinks out of the models directory refused, in it allowed;
the endpoint's admin token), and with real servers through SIGHUP while a thread pool keeps requests going: no
request fails across the swaps, and with two workers SIGHUP to the launcher reaches each.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, Server, open_app, settings_of

from bundle import manifest as manifest_module
from bundle.manifest import MANIFEST_FILE, Graphs, fingerprint_of, sha256_file

TOKEN = "reload-token-of-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = json.loads((REPO / "docs" / "examples" / "window.json").read_text())["vector"]
RELOAD_WAIT_S = 60.0


def copy_default(bundle: Path) -> str:
    """models/kpi5g copied to bundle; its fingerprint."""
    shutil.copytree(REPO / "models" / "kpi5g", bundle)
    return str(json.loads((bundle / MANIFEST_FILE).read_text())["fingerprint"])


def _sign(bundle: Path, version: str | None = None) -> str:
    """The manifest's checksums and fingerprint rewritten for the graphs on disk (and its version); the
    new fingerprint."""
    raw = json.loads((bundle / MANIFEST_FILE).read_text())
    for graph in raw["graphs"].values():
        if graph is not None:
            graph["sha256"] = sha256_file(bundle / graph["file"])
    raw["fingerprint"] = fingerprint_of(Graphs.model_validate(raw["graphs"]), raw.get("entropy_model"))
    raw["version"] = version or raw["version"]
    (bundle / MANIFEST_FILE).write_text(json.dumps(raw))
    return str(raw["fingerprint"])


def other_version(bundle: Path, version: str) -> str:
    """The bundle made a different valid one, in place: its decoder's ONNX doc_string (ModelProto field 6)
    set by appending the field (protobuf keeps the last), re-signed; the new fingerprint."""
    decoder = next(bundle.glob("decoder-*.onnx"))
    doc = version.encode()
    decoder.write_bytes(decoder.read_bytes() + bytes([0x32, len(doc)]) + doc)
    return _sign(bundle, version)


def flip_a_byte(bundle: Path) -> None:
    encoder = next(bundle.glob("encoder-*.onnx"))
    data = bytearray(encoder.read_bytes())
    data[len(data) // 2] ^= 0x01
    encoder.write_bytes(bytes(data))


def truncate_and_resign(bundle: Path) -> None:
    decoder = next(bundle.glob("decoder-*.onnx"))
    decoder.write_bytes(decoder.read_bytes()[:1000])
    _sign(bundle)


def nest_deeply(bundle: Path) -> None:
    (bundle / MANIFEST_FILE).write_text("[" * 100_000)


def graph_out(bundle: Path) -> None:
    """The encoder replaced by a symlink to the same bytes outside the models directory."""
    encoder = next(bundle.glob("encoder-*.onnx"))
    outside = bundle.parents[1] / "outside" / encoder.name
    outside.parent.mkdir(exist_ok=True)
    shutil.move(encoder, outside)
    encoder.symlink_to(outside)


def directory_out(bundle: Path) -> None:
    """The bundle directory replaced by a symlink to a copy of it outside the models directory."""
    outside = bundle.parents[1] / "outside" / bundle.name
    outside.parent.mkdir(exist_ok=True)
    shutil.move(bundle, outside)
    bundle.symlink_to(outside, target_is_directory=True)


def removed(bundle: Path) -> None:
    shutil.rmtree(bundle)


BREAKS: list[tuple[str, Callable[[Path], None], str]] = [
    ("a changed byte", flip_a_byte, "manifest says"),
    ("a re-signed graph onnxruntime cannot read", truncate_and_resign, "does not load in onnxruntime"),
    ("a manifest nested too deeply", nest_deeply, "maximum recursion depth exceeded"),
    ("a graph symlinked out of the models directory", graph_out, "out of the models directory"),
    ("the bundle symlinked out of the models directory", directory_out, "out of the models directory"),
    ("the bundle directory removed", removed, "no bundle directory"),
]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


def admin_file(models_dir: Path) -> Path:
    """A file of the admin token beside the models directory (an admin file alone leaves the api open)."""
    path = models_dir.parent / "admin-tokens"
    path.write_text(f"# the tests' admin token\n{TOKEN}\n")
    return path


@contextmanager
def app_over(models_dir: Path, **settings: Any) -> Iterator[Any]:
    settings = {"admin_token_file": admin_file(models_dir), **settings}
    with open_app(settings_of(models_dir=models_dir, provider="cpu", **settings)) as c:
        yield c


def fingerprint_of_answer(client: Any, model: str | None = None) -> str:
    r = client.post("/encode", params={"model": model} if model else {}, json={"vector": WINDOW})
    assert r.status_code == 200, r.text
    return str(r.json()["fingerprint"])


def reload(client: Any) -> dict[str, Any]:
    r = client.post("/admin/reload", headers=AUTH)
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()
    return report


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample of this name whose labels include these, None when there is none."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_replaced_bundle_is_verified_loaded_and_swapped_in(models: Path) -> None:
    old = copy_default(models / "kpi5g")
    with app_over(models) as c:
        assert fingerprint_of_answer(c) == old
        assert reload(c) == {"pid": os.getpid(), "loaded": {}, "unchanged": ["kpi5g"], "refused": {}, "error": None}
        new = other_version(models / "kpi5g", "2.0.1")
        assert new != old
        assert reload(c)["loaded"] == {"kpi5g": new}
        assert fingerprint_of_answer(c) == new
        [info] = c.get("/v1/models").json()["models"]
        assert (info["fingerprint"], info["version"]) == (new, "2.0.1")
        text = c.get("/metrics").text
        assert metric(text, "sdlgm_model_info", fingerprint=new, version="2.0.1") == 1.0
        assert not metric(text, "sdlgm_model_info", fingerprint=old)  # dropped
        assert metric(text, "sdlgm_model_loads_total", model="kpi5g", result="loaded", version="2.0.1") == 1.0
        assert metric(text, "sdlgm_reloads_total", result="done") == 2.0
        [model] = c.get("/v1/status").json()["models"]
        assert (model["version"], model["fingerprint"]) == ("2.0.1", new)


@pytest.mark.parametrize(("how", "change", "why"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_refused_bundle_leaves_the_served_one(models: Path, how: str, change: Callable[[Path], None], why: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    old = copy_default(models / "kpi5g")
    with app_over(models) as c:
        version = c.get("/v1/models/kpi5g").json()["version"]
        change(models / "kpi5g")
        report = reload(c)
        assert report["loaded"] == {} and list(report["refused"]) == ["kpi5g"] and why in report["refused"]["kpi5g"]
        assert fingerprint_of_answer(c) == old  # still served
        listing = c.get("/v1/models").json()
        assert [m["fingerprint"] for m in listing["models"]] == [old]
        assert listing["refused"] == [{"name": "kpi5g", "error": report["refused"]["kpi5g"], "serving": old}]
        assert c.get("/readyz").status_code == 200
        text = c.get("/metrics").text
        assert metric(text, "sdlgm_model_refused", model="kpi5g", version=version) == 1.0
        assert metric(text, "sdlgm_model_loads_total", model="kpi5g", result="refused") == 1.0
        [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused bundle 'kpi5g'")]
        assert why in line and line.endswith(f"still serving version {version} (fingerprint {old[:12]})")
        assert line.split(": ", 1)[0] == f"refused bundle 'kpi5g' from {models / 'kpi5g'}"
        # fixed on disk: the next reload loads it and the refusal is gone
        if (models / "kpi5g").is_symlink():
            (models / "kpi5g").unlink()
        shutil.rmtree(models / "kpi5g", ignore_errors=True)
        new = copy_default(models / "kpi5g")
        assert reload(c)["refused"] == {}
        assert fingerprint_of_answer(c) == new == old
        assert c.get("/v1/models").json()["refused"] == []
        assert metric(c.get("/metrics").text, "sdlgm_model_refused", model="kpi5g", version=version) == 0.0


def test_an_io_error_while_verifying_is_a_refusal(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = copy_default(models / "kpi5g")
    with app_over(models) as c:
        other_version(models / "kpi5g", "2.0.1")

        def unreadable(path: Path) -> str:
            raise OSError(errno.EIO, "Input/output error", str(path))

        monkeypatch.setattr(manifest_module, "sha256_file", unreadable)
        report = reload(c)
        assert report["refused"]["kpi5g"].startswith("OSError: [Errno 5] Input/output error: ")
        assert fingerprint_of_answer(c) == old


def test_a_new_bundle_is_loaded_and_symlinks_inside_the_directory_are_followed(models: Path, tmp_path: Path) -> None:
    old = copy_default(models / "kpi5g")
    with app_over(models) as c:
        new = copy_default(models / ".versions" / "other-2")
        other_version(models / ".versions" / "other-2", "2.0.2")
        (models / "other").symlink_to(Path(".versions") / "other-2", target_is_directory=True)
        outside = tmp_path / "elsewhere"
        copy_default(outside)
        (models / "evil").symlink_to(outside, target_is_directory=True)
        report = reload(c)
        assert sorted(report["loaded"]) == ["other"] and report["unchanged"] == ["kpi5g"]
        assert "out of the models directory" in report["refused"]["evil"]
        assert fingerprint_of_answer(c, "other") not in (old, new)
        assert fingerprint_of_answer(c) == old
        assert [r["name"] for r in c.get("/v1/models").json()["refused"]] == ["evil"]


def test_every_bad_bundle_at_start_is_refused_and_the_rest_served(models: Path, tmp_path: Path) -> None:
    old = copy_default(models / "kpi5g")
    for name, (_, change, _) in zip(("a", "b", "c", "d", "e"), BREAKS[:5], strict=True):
        copy_default(models / name)
        change(models / name)
    (models / "f").mkdir()
    (models / "f" / MANIFEST_FILE).symlink_to(models / "f" / MANIFEST_FILE)  # a loop: no manifest to read
    with app_over(models) as c:
        assert c.get("/readyz").status_code == 200
        assert fingerprint_of_answer(c) == old
        refused = {r["name"]: r["serving"] for r in c.get("/v1/models").json()["refused"]}
        assert refused == dict.fromkeys("abcde")
        assert metric(c.get("/metrics").text, "sdlgm_model_refused", model="c", version="") == 1.0


def test_a_listed_bundle_that_arrives_later_makes_the_service_ready(models: Path) -> None:
    copy_default(models / "kpi5g")
    with app_over(models, models="kpi5g,late") as c:
        assert c.get("/readyz").json()["reasons"] == ["model 'late' is not loaded: no bundle directory "
                                                      "'late' in SDLGM_MODELS_DIR"]
        copy_default(models / "late")
        assert list(reload(c)["loaded"]) == ["late"]
        assert c.get("/readyz").status_code == 200
        assert "\nsdlgm_ready 1.0\n" in c.get("/metrics").text


def test_a_models_directory_gone_keeps_every_model(models: Path, tmp_path: Path) -> None:
    old = copy_default(models / "kpi5g")
    with app_over(models) as c:
        models.rename(tmp_path / "away")
        report = reload(c)
        assert report["error"].startswith(f"cannot list the bundles of {models}: FileNotFoundError")
        assert fingerprint_of_answer(c) == old
        assert metric(c.get("/metrics").text, "sdlgm_reloads_total", result="failed") == 1.0
        (tmp_path / "away").rename(models)


def test_the_reload_endpoint_is_off_without_a_token_file(models: Path) -> None:
    copy_default(models / "kpi5g")
    with open_app(settings_of(models_dir=models, provider="cpu")) as c:
        r = c.post("/admin/reload", headers=AUTH)
        assert (r.status_code, r.json()["kind"]) == (403, "forbidden")
        assert r.json()["error"].startswith("the admin endpoints are off: set SDLGM_ADMIN_TOKEN_FILE")
        assert metric(c.get("/metrics").text, "sdlgm_reloads_total", result="done") is None


def test_a_directory_starting_with_a_dot_is_not_a_bundle(models: Path) -> None:
    """The staging link of docs/reload.md (`.kpi5g.new`), caught by a reload, is neither loaded nor refused."""
    copy_default(models / "kpi5g")
    with app_over(models) as c:
        (models / ".kpi5g.new").symlink_to("kpi5g")
        report = reload(c)
        assert (report["loaded"], report["unchanged"], report["refused"]) == ({}, ["kpi5g"], {})
        assert [m["name"] for m in c.get("/v1/models").json()["models"]] == ["kpi5g"]


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer not-the-token-of-the-tests"}, 401),
    ({"Authorization": TOKEN}, 401),
    ({"Authorization": "Bearer api-token-of-the-reload-tests"}, 403),  # an api token: not an admin one
])
def test_the_reload_endpoint_needs_an_admin_token(models: Path, headers: dict[str, str], status: int) -> None:
    copy_default(models / "kpi5g")
    api = models.parent / "api-tokens"
    api.write_text("api-token-of-the-reload-tests\n")
    with app_over(models, token_file=api) as c:
        r = c.post("/admin/reload", headers=headers)
        assert r.status_code == status, r.text
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="sdlgm"')
        assert metric(c.get("/metrics", headers=AUTH).text, "sdlgm_reloads_total", result="done") is None


# --- real servers, SIGHUP, traffic across the swaps ------------------------------------------------------


class Traffic:
    """Threads sending /encode over their own keep-alive connections until stopped; every answer's status
    and fingerprint, in order of arrival."""

    def __init__(self, url: str, threads: int) -> None:
        self.url, self.threads = url, threads
        self.answers: list[tuple[int, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _send(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/encode", json={"vector": WINDOW})
                    answer = (r.status_code, r.json().get("fingerprint", r.text))
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                with self._lock:
                    self.answers.append(answer)

    def since(self, start: int) -> list[tuple[int, str]]:
        with self._lock:
            return self.answers[start:]

    @contextmanager
    def running(self) -> Iterator[Traffic]:
        with ThreadPoolExecutor(self.threads) as pool:
            futures = [pool.submit(self._send) for _ in range(self.threads)]
            try:
                yield self
            finally:
                self._stop.set()
                for f in futures:
                    f.result()


def wait_for(what: str, check: Callable[[], bool], server: Server) -> None:
    deadline = time.monotonic() + RELOAD_WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {RELOAD_WAIT_S} s:\n{server.log()}")


def listing(server: Server) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    return answer


def served_fingerprint(server: Server) -> str:
    return str(listing(server)["models"][0]["fingerprint"])


def swap(server: Server, traffic: Traffic, done: Callable[[], bool], what: str) -> list[tuple[int, str]]:
    """SIGHUP with traffic going; the answers from the signal until the reload is seen done and a little more."""
    start = len(traffic.since(0))
    server.process.send_signal(signal.SIGHUP)
    wait_for(what, done, server)
    seen = len(traffic.since(0))
    wait_for("answers after the reload", lambda: len(traffic.since(seen)) > 2 * traffic.threads, server)
    return traffic.since(start)


def test_sighup_swaps_bundles_under_load_with_no_failed_request(
        models: Path, tmp_path: Path, serve: Callable[..., AbstractContextManager[Server]]) -> None:
    first = copy_default(models / "kpi5g")
    env = {"SDLGM_MODELS_DIR": str(models), "SDLGM_PROVIDER": "cpu"}
    with serve(env) as server, Traffic(server.url, threads=6).running() as traffic:
        wait_for("answers", lambda: len(traffic.since(0)) > 20, server)
        second = other_version(models / "kpi5g", "2.0.1")
        during = swap(server, traffic, lambda: served_fingerprint(server) == second, "swap to the second version")
        assert {fp for _, fp in during} <= {first, second} and during[-1][1] == second
        # a broken one: refused, the second keeps answering
        flip_a_byte(models / "kpi5g")
        during += swap(server, traffic, lambda: bool(listing(server)["refused"]), "refusal")
        assert listing(server)["refused"][0]["serving"] == second
        assert {fp for _, fp in traffic.since(len(traffic.since(0)) - 10)} == {second}
        # a third valid version written beside and moved in, and a symlink out of the directory
        copy_default(tmp_path / "staged")
        third = other_version(tmp_path / "staged", "2.0.2")
        shutil.move(models / "kpi5g", tmp_path / "broken")
        shutil.move(tmp_path / "staged", models / "kpi5g")
        (models / "evil").symlink_to(tmp_path / "broken", target_is_directory=True)
        during += swap(server, traffic, lambda: served_fingerprint(server) == third, "swap to the third version")
        refused = listing(server)["refused"]
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert traffic.failures == []
    assert {status for status, _ in traffic.answers} == {200}, [a for a in traffic.answers if a[0] != 200][:5]
    assert {fp for _, fp in traffic.answers} == {first, second, third}
    assert [(r["name"], r["serving"]) for r in refused] == [("evil", None)]
    assert metric(text, "sdlgm_model_refused", model="evil") == 1.0
    assert metric(text, "sdlgm_model_refused", model="kpi5g", version="2.0.1") == 0.0
    assert metric(text, "sdlgm_reloads_total", result="done") == 3.0
    log = server.log()
    assert log.count("reload (SIGHUP): ") == 3
    assert f"still serving version 2.0.1 (fingerprint {second[:12]})" in log
    assert "refused bundle 'evil'" in log and "out of the models directory" in log


def test_sighup_to_the_launcher_reloads_every_worker(
        models: Path, serve: Callable[..., AbstractContextManager[Server]]) -> None:
    first = copy_default(models / "kpi5g")
    env = {"SDLGM_MODELS_DIR": str(models), "SDLGM_PROVIDER": "cpu", "SDLGM_WORKERS": "2"}
    with serve(env) as server, Traffic(server.url, threads=4).running() as traffic:
        wait_for("both workers ready", lambda: httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
                 and len(traffic.since(0)) > 20, server)
        second = other_version(models / "kpi5g", "2.0.1")

        def every_worker_swapped() -> bool:  # sdlgm_model_info is the max over live workers: 0 once all moved
            text = httpx.get(f"{server.url}/metrics", timeout=10).text
            return (metric(text, "sdlgm_model_info", fingerprint=first) in (None, 0.0)
                    and metric(text, "sdlgm_model_info", fingerprint=second) == 1.0)

        swap(server, traffic, every_worker_swapped, "reload in every worker")
        fresh = [httpx.post(f"{server.url}/encode", json={"vector": WINDOW}, timeout=10) for _ in range(20)]
    assert traffic.failures == []
    assert {status for status, _ in traffic.answers} == {200}
    assert {r.json()["fingerprint"] for r in fresh} == {second}  # new connections, whichever worker takes them
    # each worker's pass logs one line; a worker the launcher replaced meanwhile (a missed health ping on a
    # busy machine) loads the new bundle at its start instead
    assert 1 <= server.log().count("reload (SIGHUP): 1 loaded, 0 unchanged, 0 refused") <= 2


def test_reloads_asked_during_a_pass_wait_for_the_next_one_and_share_it(models: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload asked while a pass runs is answered by a pass begun after it (the running one may have
    read the directory before the change it was asked for), and every request asked meanwhile shares it."""
    import service.reload as reload_module

    copy_default(models / "kpi5g")
    real = reload_module.load_registry
    passes: list[tuple[float, float]] = []  # each reload pass's start and end
    held = threading.Event()

    def observed(settings: Any, observe: Any, served: Any = None) -> Any:
        start = time.monotonic()
        if served is not None and not passes:
            held.wait(30)  # the first reload's pass is held until the later requests are in
        elif served is not None:
            time.sleep(0.5)  # the next pass lasts longer than an answer takes to come back
        loading = real(settings, observe, served)
        if served is not None:
            passes.append((start, time.monotonic()))
        return loading

    monkeypatch.setattr(reload_module, "load_registry", observed)

    def answered(client: Any) -> float:
        reload(client)
        return time.monotonic()

    with app_over(models) as c, ThreadPoolExecutor(3) as pool:
        first = pool.submit(answered, c)
        time.sleep(0.3)  # the first pass is running, held
        later = [pool.submit(answered, c) for _ in range(2)]
        time.sleep(0.3)
        assert not first.done() and not any(f.done() for f in later)
        held.set()
        first_done, later_done = first.result(60), [f.result(60) for f in later]
    assert len(passes) == 2, passes  # the first reload's pass, then one for both later requests
    assert first_done >= passes[0][1]
    assert all(done >= passes[1][1] for done in later_done), (later_done, passes)


def test_the_api_schema_names_the_models_served_after_a_reload(models: Path) -> None:
    """/openapi.json's model examples follow the registry: its cache is built again after a swap."""
    copy_default(models / "kpi5g")

    def examples(client: Any) -> set[str]:
        schema = client.get("/openapi.json").json()
        [model] = [p for p in schema["paths"]["/encode"]["post"]["parameters"] if p["name"] == "model"]
        return set(model["examples"])

    with app_over(models) as c:
        assert examples(c) == {"kpi5g"}
        copy_default(models / "second")
        assert list(reload(c)["loaded"]) == ["second"]
        assert examples(c) == {"kpi5g", "second"}
