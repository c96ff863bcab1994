"""Access control (service.auth), CORS and TLS: for each class of path the answer without a token, with a
wrong one and with the right one (401 with WWW-Authenticate, 403 for an api token on an admin path), the
probes open and naming no file path, /metrics open or closed by SDLGM_AUTH_METRICS, a rotated token file
read again, the token files refused at start when unsafe, the OpenAPI schema declaring the scheme, and, in
a real `python -m service` over HTTPS with a self-signed certificate made here by openssl, no token in
its logs."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SESSION_SETTINGS, Server, open_app, settings_of
from fastapi.testclient import TestClient
from pydantic import ValidationError

from client import Client, ServiceError
from service import auth
from service.app import create_app
from service.settings import describe_error

TOKEN = "api-token-0123456789abcdef"
OTHER = "api-token-rolled-out-later-42"
ADMIN = "admin-token-fedcba9876543210"
WRONG = "not-the-token-0123456789"
V = [0.5] * 80
CHALLENGE = 'Bearer realm="sdlgm"'
INVALID = 'Bearer realm="sdlgm", error="invalid_token"'


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def token_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tokens")
    (root / "api").write_text(f"# the inference clients\n{TOKEN}\n\n")
    (root / "admin").write_text(ADMIN)  # as a secret mount holds it: no newline
    return root / "api", root / "admin"


def app_with_admin_route(**values: object) -> TestClient:
    """The app with these settings and an admin route of the tests' own (/admin/echo), so that the access classes
    are tested apart from what the real admin endpoint (/admin/reload) does."""
    app = create_app(settings_of(**{**SESSION_SETTINGS, **values}))

    @app.post("/admin/echo")
    async def echo() -> dict[str, bool]:
        return {"admin": True}

    return TestClient(app)


@pytest.fixture(scope="module")
def secured(models_dir: Path, token_files: tuple[Path, Path]) -> Iterator[TestClient]:
    api_file, admin_file = token_files
    with app_with_admin_route(models_dir=models_dir, token_file=api_file, admin_token_file=admin_file) as c:
        yield c


def assert_refused(r: httpx.Response, status: int, challenge: str, kind: str = "unauthorized") -> None:
    assert r.status_code == status, r.text
    assert r.headers["www-authenticate"] == challenge
    assert r.json()["kind"] == kind


INFERENCE = [("POST", "/encode", {"json": {"vector": V}}), ("GET", "/v1/models", {}),
             ("POST", "/v2/models/kpi5g-encode/infer",
              {"json": {"inputs": [{"name": "x", "shape": [1, 80], "datatype": "FP32", "data": V}]}}),
             ("GET", "/nope", {})]


@pytest.mark.parametrize(("method", "path", "kwargs"), INFERENCE, ids=[p for _, p, _ in INFERENCE])
def test_inference_needs_a_valid_token(secured: TestClient, method: str, path: str, kwargs: dict[str, Any]) -> None:
    missing = secured.request(method, path, **kwargs)
    assert_refused(missing, 401, CHALLENGE)
    assert missing.json()["error"] == "this endpoint needs a bearer token: send `Authorization: Bearer <token>`"
    wrong = secured.request(method, path, headers=bearer(WRONG), **kwargs)
    assert_refused(wrong, 401, INVALID)
    assert wrong.json()["error"] == "the bearer token is not valid"
    assert WRONG not in wrong.text
    right = secured.request(method, path, headers=bearer(TOKEN), **kwargs)
    assert right.status_code == (404 if path == "/nope" else 200), right.text
    assert secured.request(method, path, headers=bearer(ADMIN), **kwargs).status_code == right.status_code


@pytest.mark.parametrize("header", ["Basic " + TOKEN, TOKEN, "Bearer", "Bearer  ", "bearer " + WRONG])
def test_other_schemes_and_malformed_headers_are_refused(secured: TestClient, header: str) -> None:
    r = secured.post("/encode", json={"vector": V}, headers={"Authorization": header})
    assert r.status_code == 401


def test_the_scheme_is_case_insensitive_and_the_query_is_no_place_for_a_token(secured: TestClient) -> None:
    assert secured.post("/encode", json={"vector": V}, headers={"Authorization": f"bEaReR {TOKEN}"}).status_code == 200
    assert_refused(secured.post("/encode", params={"access_token": TOKEN}, json={"vector": V}), 401, CHALLENGE)


def test_admin_paths_need_an_admin_token(secured: TestClient) -> None:
    assert_refused(secured.post("/admin/echo"), 401, CHALLENGE)
    assert_refused(secured.post("/admin/echo", headers=bearer(WRONG)), 401, INVALID)
    forbidden = secured.post("/admin/echo", headers=bearer(TOKEN))
    assert_refused(forbidden, 403, 'Bearer realm="sdlgm", error="insufficient_scope"', "forbidden")
    assert forbidden.json()["error"] == "this token does not grant the admin endpoints (SDLGM_ADMIN_TOKEN_FILE)"
    assert secured.post("/admin/echo", json={}, headers=bearer(ADMIN)).json() == {"admin": True}


def test_without_an_admin_file_the_api_tokens_grant_the_admin_paths(models_dir: Path,
                                                                    token_files: tuple[Path, Path]) -> None:
    with app_with_admin_route(models_dir=models_dir, token_file=token_files[0]) as c:
        assert_refused(c.post("/admin/echo"), 401, CHALLENGE)
        assert c.post("/admin/echo", json={}, headers=bearer(TOKEN)).status_code == 200


def test_an_admin_file_alone_closes_only_the_admin_paths(models_dir: Path, token_files: tuple[Path, Path]) -> None:
    with app_with_admin_route(models_dir=models_dir, admin_token_file=token_files[1]) as c:
        assert c.post("/encode", json={"vector": V}).status_code == 200
        assert_refused(c.post("/admin/echo"), 401, CHALLENGE)
        assert c.post("/admin/echo", json={}, headers=bearer(ADMIN)).status_code == 200


def test_without_token_files_every_path_is_open_but_the_admin_ones(models_dir: Path) -> None:
    with app_with_admin_route(models_dir=models_dir) as c:
        assert c.post("/encode", json={"vector": V}).status_code == 200
        assert c.get("/metrics").status_code == 200
        for path in ("/admin/echo", "/admin/reload", "/admin"):
            off = c.post(path, json={}, headers=bearer(ADMIN))
            assert (off.status_code, off.json()) == (403, {"kind": "forbidden", "error": "the admin endpoints are "
                                                           "off: set SDLGM_ADMIN_TOKEN_FILE (or SDLGM_TOKEN_FILE) to "
                                                           "turn them on; SIGHUP reloads the bundles without them"})
            assert "WWW-Authenticate" not in off.headers
        assert "securitySchemes" not in c.get("/openapi.json").json()["components"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/docs",
                                  "/openapi.json", "/", "/static/status.js", "/metrics", "/v1/status"])
def test_probes_docs_the_status_page_and_by_default_the_metrics_are_open(secured: TestClient, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_metrics_close_with_auth_metrics(models_dir: Path, token_files: tuple[Path, Path]) -> None:
    with open_app(settings_of(models_dir=models_dir, token_file=token_files[0], auth_metrics=True)) as c:
        for path in ("/metrics", "/v1/status"):
            assert_refused(c.get(path), 401, CHALLENGE)
            assert_refused(c.get(path, headers=bearer(WRONG)), 401, INVALID)
            assert c.get(path, headers=bearer(TOKEN)).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert 'sdlgm_errors_total{kind="unauthorized"} 4.0' in c.get("/metrics", headers=bearer(TOKEN)).text


def test_readyz_names_no_file_path(models_dir: Path, token_files: tuple[Path, Path], tmp_path: Path) -> None:
    bundles = tmp_path / "John Smith" / "models"  # a space: no regular expression of paths alone would cut it
    shutil.copytree(models_dir / "kpi5g", bundles / "kpi5g")
    shutil.copytree(models_dir / "kpi5g", bundles / "broken")
    (bundles / "broken" / "manifest.json").write_text("{")
    with open_app(settings_of(models_dir=bundles, models="kpi5g,broken,ghost", token_file=token_files[0])) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert str(tmp_path) not in r.text and str(models_dir) not in r.text and "Smith" not in r.text
        assert r.json()["refused"]["ghost"] == "no bundle directory 'ghost' in SDLGM_MODELS_DIR"
        assert r.json()["refused"]["broken"].startswith("SDLGM_MODELS_DIR/broken/manifest.json: invalid manifest: ")
        assert c.get("/healthz").json().keys() == {"status", "pid"}


def test_an_unauthenticated_body_is_refused_before_it_is_read(secured: TestClient) -> None:
    """401, not the 413 a body over SDLGM_MAX_BODY_BYTES gets once the token is right."""
    big = b"[" + b"0," * (1 << 20) + b"0]"
    assert_refused(secured.post("/encode", content=big, headers={"content-type": "application/json"}), 401, CHALLENGE)
    over = secured.post("/encode", content=big, headers={"content-type": "application/json", **bearer(TOKEN)})
    assert over.status_code == 413


def test_a_rotated_token_file_is_read_again(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(auth, "RELOAD_S", 0.0)
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN)
    with open_app(settings_of(models_dir=models_dir, token_file=tokens)) as c:
        assert c.get("/v1/models", headers=bearer(TOKEN)).status_code == 200
        tokens.write_text(f"{TOKEN}\n{OTHER}\n")  # the new one rolled out beside the old
        assert c.get("/v1/models", headers=bearer(OTHER)).status_code == 200
        tokens.write_text(OTHER)  # the old one withdrawn
        assert c.get("/v1/models", headers=bearer(TOKEN)).status_code == 401
        tokens.write_text("")  # a broken rotation keeps the tokens read last
        assert c.get("/v1/models", headers=bearer(OTHER)).status_code == 200
    assert "holds no token" in caplog.text
    assert TOKEN not in caplog.text and OTHER not in caplog.text


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "t").write_text(f"{TOKEN}\n{OTHER}\n")
    compared: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    tokens = auth.TokenFile(tmp_path / "t")
    assert tokens.holds(TOKEN) and not tokens.holds(WRONG)
    assert len(compared) == 4  # every token, even after a match, and as digests of one length
    assert {len(a) for pair in compared for a in pair} == {32}


BAD_FILES = [("", "holds no token (one a line; '#' starts a comment)"),
             ("# only a comment\n", "holds no token"),
             ("short\n", "the token on line 1 has 5 characters; a token needs at least 16"),
             (f"{TOKEN}\nwith a space in it 123\n", "the token on line 2 holds characters a bearer token cannot carry")]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=["empty", "comments only", "short", "space"])
def test_unsafe_token_files_fail_at_start(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    for field in ("token_file", "admin_token_file"):
        with pytest.raises(ValidationError) as info:
            settings_of(models_dir=tmp_path, **{field: path})
        described = describe_error(info.value)
        assert f"SDLGM_{field.upper()}={path}: {message}" in described
        assert TOKEN not in described and "space in it" not in described


def test_a_missing_token_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        settings_of(models_dir=tmp_path, token_file=tmp_path / "none")
    assert f"SDLGM_TOKEN_FILE={tmp_path / 'none'}: cannot be read: FileNotFoundError" in describe_error(info.value)


def test_the_openapi_schema_declares_the_bearer_scheme(secured: TestClient) -> None:
    schema = secured.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    for path, method in [("/encode", "post"), ("/v1/models", "get"), ("/v2/models/{model}/infer", "post")]:
        assert paths[path][method]["security"] == [{"bearer": []}]
        assert "401" in paths[path][method]["responses"]
    assert paths["/admin/echo"]["post"]["security"] == [{"bearer": []}]
    assert "403" in paths["/admin/echo"]["post"]["responses"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in paths[path]["get"] and "401" not in paths[path]["get"]["responses"]


# --- CORS ----------------------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://dash.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def test_cors_is_off_unless_origins_are_listed(secured: TestClient) -> None:
    r = secured.get("/healthz", headers={"Origin": "https://dash.example"})
    assert "access-control-allow-origin" not in r.headers
    assert secured.options("/encode", headers=PREFLIGHT).status_code in (401, 405)


def test_listed_origins_get_cors_answers_and_preflights_need_no_token(models_dir: Path,
                                                                      token_files: tuple[Path, Path]) -> None:
    settings = settings_of(models_dir=models_dir, token_file=token_files[0], cors_origins="https://dash.example/, "
                           "http://localhost:3000")
    assert settings.cors_origin_list == ["https://dash.example", "http://localhost:3000"]
    with open_app(settings) as c:
        pre = c.options("/encode", headers=PREFLIGHT)
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://dash.example"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        refused = c.post("/encode", json={"vector": V}, headers={"Origin": "https://dash.example"})
        assert refused.status_code == 401  # the page can read why
        assert refused.headers["access-control-allow-origin"] == "https://dash.example"
        assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]
        other = c.options("/encode", headers={**PREFLIGHT, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("origins", ["dash.example", "https://dash.example/path", "ftp://x.example", " , "])
def test_malformed_origins_fail_at_start(tmp_path: Path, origins: str) -> None:
    with pytest.raises(ValidationError) as info:
        settings_of(models_dir=tmp_path, cors_origins=origins)
    assert describe_error(info.value).startswith(f"invalid settings: SDLGM_CORS_ORIGINS={origins}: ")


# --- a real server: TLS and the logs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_settings_go_together_and_must_load(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with pytest.raises(ValidationError) as info:
        settings_of(models_dir=tmp_path, tls_certfile=cert)
    assert "SDLGM_TLS_CERTFILE and SDLGM_TLS_KEYFILE go together" in describe_error(info.value)
    with pytest.raises(ValidationError) as info:
        settings_of(models_dir=tmp_path, tls_certfile=key, tls_keyfile=key)
    assert f"SDLGM_TLS_CERTFILE={key} with SDLGM_TLS_KEYFILE={key} does not load" in describe_error(info.value)


def test_a_real_server_over_tls_with_tokens_never_logs_them(
        models_dir: Path, token_files: tuple[Path, Path], certificate: tuple[Path, Path],
        serve: Callable[..., AbstractContextManager[Server]]) -> None:
    cert, key = certificate
    env = {"SDLGM_MODELS_DIR": str(models_dir), "SDLGM_PROVIDER": "cpu", "SDLGM_LOG_LEVEL": "debug",
           "SDLGM_TOKEN_FILE": str(token_files[0]), "SDLGM_ADMIN_TOKEN_FILE": str(token_files[1]),
           "SDLGM_TLS_CERTFILE": str(cert), "SDLGM_TLS_KEYFILE": str(key)}
    with serve(env) as server:
        assert server.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=server.url, verify=trusted, timeout=30) as c:
            assert c.get("/healthz").status_code == 200
            assert c.post("/encode", json={"vector": V}, headers=bearer(WRONG)).status_code == 401
            assert c.post("/encode", json={"vector": V}, headers=bearer(TOKEN)).status_code == 200
            assert c.post("/admin/reload", json={}, headers=bearer(TOKEN)).status_code == 403
            reloaded = c.post("/admin/reload", json={}, headers=bearer(ADMIN))
            assert reloaded.status_code == 200 and "kpi5g" in reloaded.json()["unchanged"], reloaded.text
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=5)  # not trusted without the certificate
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)  # no plain HTTP on a TLS port
        with Client(server.url, token=TOKEN, verify=str(cert)) as sdlgm:
            assert sdlgm.decode(sdlgm.encode(V)).shape == (1, 80)
            assert TOKEN not in repr(sdlgm)
        with Client(server.url, token=WRONG, verify=str(cert)) as sdlgm, pytest.raises(ServiceError) as info:
            sdlgm.encode(V)
        assert (info.value.status, info.value.kind) == (401, "unauthorized")
    logs = server.stdout.read_text(errors="replace") + server.log()
    assert "POST /encode" in logs  # the access log was on
    for token in (TOKEN, ADMIN, WRONG):
        assert token not in logs


# --- the compose deployment ----------------------------------------------------------------------------

def test_compose_publishes_every_port_on_loopback_unless_told_and_passes_the_access_settings() -> None:
    import yaml
    from conftest import REPO

    from service.settings import Settings

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("${SDLGM_BIND:-127.0.0.1}:"), f"{name} publishes {port} on every address"
    passed = set(compose["services"]["sdlgm"]["environment"])
    wanted = {f"SDLGM_{f.upper()}" for f in Settings.model_fields} - {"SDLGM_HOST", "SDLGM_PORT", "SDLGM_MODELS_DIR"}
    assert wanted <= passed, f"not passed to the container: {sorted(wanted - passed)}"
