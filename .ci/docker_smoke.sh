#!/usr/bin/env bash
# Docker smoke test: build the images, bring the compose stack up, and check it for real.
#
# Steps, each timed; a failure names its step and tears everything down:
#   packages    install docker.io, debootstrap, docker-compose from Debian when missing (one apt-get update)
#   dockerd     start `dockerd --iptables=false` (overlay2 if it mounts, else vfs) if no engine answers;
#               stopped at exit
#   base        make the base image sdlgm-base:bookworm with debootstrap + docker import, unless present
#   wheelhouse  ./wheelhouse: the wheels of docker/serve.lock for the image's Python and libc
#   build       docker-compose build: sdlgm:latest and sdlgm-prometheus:local (docker-compose.local.yml)
#   up          docker-compose up -d, then wait until the sdlgm healthcheck reports healthy
#   api         /v1/models, /encode, /decode (both code forms), a bad request and /metrics, inside the container
#   prometheus  through Prometheus's HTTP API: up{job="sdlgm"} == 1 and sum(sdlgm_requests_total) > 0
#   rules       /api/v1/rules lists every alert of docker/alerts.yml, each evaluated with health ok, none firing
#   dashboard   every query of docker/grafana/dashboards/sdlgm.json ($__rate_interval as 1m, $model as .*)
#               and its model variable's label_values answer without error from that Prometheus, and every
#               query whose series all exist has data
#   user        the service runs as a non-root uid
#   stop        docker stop -t 10 (SIGTERM) ends it with exit code 0 within the grace period
#   down        docker-compose down -v; no container, network or volume of the project is left
#
# Usage (as root): .ci/docker_smoke.sh
# Environment: SDLGM_SMOKE_NO_CACHE=1 builds without the layer cache (cold build timing);
#   SDLGM_DEBIAN_MIRROR (default http://deb.debian.org/debian); PYTHON (default python3, needs pip);
#   SDLGM_DOCKER_STORAGE_DRIVER (overlay2 or vfs, when this script starts dockerd; default: probed);
#   HOST_PORT_SDLGM / HOST_PORT_PROMETHEUS (default 18000 / 19090, away from a developer's 8000 / 9090).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PROJECT=sdlgm-ci
BASE_IMAGE=sdlgm-base:bookworm
MIRROR=${SDLGM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
CACHE_DIR=$ROOT/.docker-cache
export HOST_PORT_SDLGM=${HOST_PORT_SDLGM:-18000}
export HOST_PORT_PROMETHEUS=${HOST_PORT_PROMETHEUS:-19090}
COMPOSE=(docker-compose -f docker-compose.yml -f docker-compose.local.yml -p "$PROJECT")
HEALTHY_WITHIN_S=180
SCRAPED_WITHIN_S=90
GRACE_S=10

STEP=setup
STEP_T0=$SECONDS
TIMINGS=()
DOCKERD_PID=""
ROOTFS=""
STACK_UP=0

log() { printf '[docker_smoke] %s\n' "$*"; }
die() { log "FAILED in step '$STEP': $*" >&2; exit 1; }
step() {
  STEP=$1
  STEP_T0=$SECONDS
  log "== $STEP"
}
step_done() {
  TIMINGS+=("$(printf '%-11s %4ds  %s' "$STEP" $((SECONDS - STEP_T0)) "${1:-}")")
}

# Remove a debootstrap tree safely: lazily unmount anything still mounted in it, never cross into a mount.
remove_rootfs() {
  local dir=$1 mnt
  for mnt in $(awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mnt" || true
  done
  rm -rf --one-file-system "$dir"
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    log "FAILED in step '$STEP' (exit $rc)" >&2
    if [ "$STACK_UP" = 1 ]; then
      "${COMPOSE[@]}" ps >&2
      "${COMPOSE[@]}" logs --no-color --tail=60 >&2
    fi
  fi
  if [ "$STACK_UP" = 1 ]; then
    log "tearing down the $PROJECT stack"
    "${COMPOSE[@]}" down -v --remove-orphans --timeout "$GRACE_S" >/dev/null 2>&1
  fi
  [ -n "$ROOTFS" ] && remove_rootfs "$ROOTFS"
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd this script started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      log "dockerd did not stop in 30 s; killing it" >&2
      kill -KILL "$DOCKERD_PID"
    fi
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  log "timings:"
  local line
  for line in "${TIMINGS[@]}"; do log "  $line"; done
  log "total ${SECONDS}s, result: $([ "$rc" -eq 0 ] && echo PASS || echo FAIL)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------
step packages
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and not root: apt-get install ${missing[*]}"
  log "installing ${missing[*]}"
  apt-get update -qq || die "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]}"
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON to an interpreter with pip)"
step_done "${missing[*]:-nothing to install}"

# ---------------------------------------------------------------------------------------------------
step dockerd
if docker info >/dev/null 2>&1; then
  step_done "engine already running"
else
  [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting dockerd needs root"
  mkdir -p "$CACHE_DIR"
  # overlay2 when the kernel can mount overlayfs on /var/lib/docker's file system: builds are several
  # times faster than on vfs, which copies the whole file system for every layer and container but
  # works everywhere (inside containers, on overlay). This machine has no iptables, so no NAT either.
  driver=${SDLGM_DOCKER_STORAGE_DRIVER:-}
  if [ -z "$driver" ]; then
    mkdir -p /var/lib/docker
    probe=$(mktemp -d /var/lib/docker/overlay-probe.XXXXXX)
    mkdir "$probe"/{lower,upper,work,merged}
    driver=vfs
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
      "$probe/merged" 2>/dev/null; then
      umount "$probe/merged"
      driver=overlay2
    fi
    rm -rf "$probe"
  fi
  dockerd --iptables=false --storage-driver="$driver" >"$CACHE_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd exited; see $CACHE_DIR/dockerd.log"
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer in 30 s; see $CACHE_DIR/dockerd.log"
  step_done "started pid $DOCKERD_PID ($driver), log $CACHE_DIR/dockerd.log"
fi

# ---------------------------------------------------------------------------------------------------
step base
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  step_done "reused $BASE_IMAGE"
else
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
  ROOTFS=$(mktemp -d /var/tmp/sdlgm-rootfs.XXXXXX)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log" >&2; die "debootstrap"; }
  rm -f "$ROOTFS.log"
  # apt lists, caches, docs and translations are not needed in an image (about 130 MB saved).
  rm -rf "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
  tar -C "$ROOTFS" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/usr/bin/python3"]' \
    - "$BASE_IMAGE" >/dev/null || die "docker import"
  remove_rootfs "$ROOTFS"
  ROOTFS=""
  step_done "built $BASE_IMAGE"
fi
docker run --rm "$BASE_IMAGE" python3 -c 'import venv' || die "$BASE_IMAGE has no working python3 -m venv"

# ---------------------------------------------------------------------------------------------------
step wheelhouse
# Target the interpreter, libc and machine of the image, not of this host.
read -r PYVER LIBC MACHINE < <(docker run --rm "$BASE_IMAGE" python3 -c \
  'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1], platform.machine())')
[ -n "$LIBC" ] || die "cannot read the glibc version of $BASE_IMAGE"
platforms=(--platform "manylinux2014_$MACHINE")
for minor in $(seq "${LIBC#2.}" -1 17); do platforms+=(--platform "manylinux_2_${minor}_$MACHINE"); done
rm -rf wheelhouse
mkdir wheelhouse
# The image installs docker/serve.lock and nothing else: no sdlgm wheel (bundle/ and service/ are copied).
"$PYTHON" -m pip download --quiet --dest wheelhouse --only-binary=:all: \
  --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none \
  "${platforms[@]}" -r docker/serve.lock || die "pip download of docker/serve.lock for Python $PYVER $MACHINE"
step_done "$(ls wheelhouse | wc -l) wheels, $(du -sh wheelhouse | cut -f1), Python $PYVER glibc $LIBC $MACHINE"

# ---------------------------------------------------------------------------------------------------
step build
build_flags=(--force-rm)  # a failed step leaves no intermediate container behind
[ "${SDLGM_SMOKE_NO_CACHE:-0}" = 1 ] && build_flags+=(--no-cache)
"${COMPOSE[@]}" build "${build_flags[@]}" || die "docker-compose build"
IMAGE_MB=$(( $(docker image inspect sdlgm:latest --format '{{.Size}}') / 1000000 ))
step_done "$([ "${SDLGM_SMOKE_NO_CACHE:-0}" = 1 ] && echo cold || echo cached), sdlgm:latest ${IMAGE_MB} MB"
# The image carries the torch-free halves only: bundle/ and service/, no model/, training/ or torch.
docker run --rm sdlgm:latest /opt/venv/bin/python -c '
import importlib.util, sys
present = {m: importlib.util.find_spec(m) is not None for m in ("bundle", "service", "model", "training", "torch")}
want = {"bundle": True, "service": True, "model": False, "training": False, "torch": False}
sys.exit(0 if present == want else f"image packages {present}, expected {want}")' || die "sdlgm:latest carries more than bundle/ and service/"
docker run --rm sdlgm:latest /bin/sh -c 'test -z "$(find / -xdev -name torch -print -quit)"' \
  || die "a torch directory is in sdlgm:latest"
# The Dockerfile itself refuses torch; compilers would come from the base image.
if docker run --rm sdlgm:latest /bin/sh -c 'for t in gcc cc g++ make; do command -v "$t" && exit 0; done; exit 1'; then
  die "a compiler or make is present in sdlgm:latest"
fi

# ---------------------------------------------------------------------------------------------------
step up
STACK_UP=1
"${COMPOSE[@]}" up -d --no-build || die "docker-compose up"
CID=$("${COMPOSE[@]}" ps -q sdlgm)
[ -n "$CID" ] || die "no sdlgm container"
health=starting
deadline=$((SECONDS + HEALTHY_WITHIN_S))
while [ "$SECONDS" -lt "$deadline" ]; do
  read -r health restarts < <(docker inspect \
    --format '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}} {{.RestartCount}}' "$CID")
  case "$health" in
    running/healthy) break ;;
    running/unhealthy | exited/* | dead/* | restarting/*)
      docker inspect --format '{{json .State.Health}}' "$CID" >&2
      die "sdlgm is $health" ;;
  esac
  [ "$restarts" = 0 ] || die "sdlgm restarted $restarts times while starting"
  sleep 1
done
[ "$health" = running/healthy ] || die "sdlgm not healthy within ${HEALTHY_WITHIN_S}s (last: $health)"
step_done "healthy after $((SECONDS - STEP_T0))s"

# ---------------------------------------------------------------------------------------------------
step api
docker exec -i "$CID" /opt/venv/bin/python - <<'PY' || die "encode/decode round trip inside the container"
"""Real vectors through /encode and their codes through /decode, both code forms, plus /metrics."""
import base64
import json
import math
import os
import random
import urllib.error
import urllib.request
from pathlib import Path

BASE = f"http://127.0.0.1:{os.environ.get('SDLGM_PORT', '8000')}"


def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return raw if path == "/metrics" else json.loads(raw)


def check(cond, what):
    if not cond:
        raise SystemExit(f"check failed: {what}")


name = os.environ.get("SDLGM_DEFAULT_MODEL", "kpi5g")
manifest = json.loads((Path(os.environ["SDLGM_MODELS_DIR"]) / name / "manifest.json").read_text())
D = manifest["D"]
listed = {m["name"]: m for m in call("/v1/models")["models"]}
check(name in listed, f"/v1/models lists {sorted(listed)}, not {name}")

# Vectors around the training distribution: mean + std * N(0, 1) per feature when the bundle records it.
rng = random.Random(0)
std = manifest.get("standardization") or {"mean": [0.0] * D, "std": [1.0] * D}
vectors = [[m + s * rng.gauss(0.0, 1.0) for m, s in zip(std["mean"], std["std"])] for _ in range(8)]
enc = call(f"/encode?model={name}", {"vectors": vectors})
codes = enc["codes"]
check(len(codes) == len(vectors), f"{len(codes)} codes for {len(vectors)} vectors")
check(len(enc["fingerprint"]) == 64, f"fingerprint {enc['fingerprint']!r}")
for c in codes:
    check(len(c["indices"]) == len(c["counts"]), f"indices/counts lengths differ: {c}")
    check(len(base64.b64decode(c["binary"])) == c["size_bytes"], f"binary is not size_bytes long: {c}")

recs = []
for form in (
    [{"indices": c["indices"], "counts": c["counts"]} for c in codes],
    [{"binary": c["binary"]} for c in codes],
):
    dec = call(f"/decode?model={name}", {"fingerprint": enc["fingerprint"], "codes": form})
    rec = dec["reconstructions"]
    check(len(rec) == len(vectors) and all(len(r) == D for r in rec), f"reconstructions not {len(vectors)}x{D}")
    check(all(math.isfinite(v) for r in rec for v in r), "non-finite reconstruction")
    recs.append(rec)
check(
    all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for ra, rb in zip(*recs) for a, b in zip(ra, rb)),
    "decoding the binary codes differs from decoding indices/counts",
)

try:
    call(f"/encode?model={name}", {"vectors": [[0.0] * (D + 1)]})
    raise SystemExit("a vector of D+1 floats was accepted")
except urllib.error.HTTPError as exc:
    check(400 <= exc.code < 500, f"wrong-length vector answered {exc.code}")

metrics = call("/metrics").decode()
check("sdlgm_requests_total" in metrics, "sdlgm_requests_total missing from /metrics")
nnz = sum(c["nnz"] for c in codes) / len(codes)
size = sum(c["size_bytes"] for c in codes) / len(codes)
print(f"{name} on {listed[name]['provider']}: {len(vectors)} vectors of D={D}, mean nnz {nnz:.1f}, "
      f"mean code {size:.1f} B (float32 input {4 * D} B)")
PY
step_done "encode -> decode (indices/counts and binary), 4xx on bad D, /metrics"

# ---------------------------------------------------------------------------------------------------
step prometheus
# Polls until Prometheus has scraped the service after the api step; a scrape every 5 s is configured.
"$PYTHON" - "$HOST_PORT_PROMETHEUS" "$SCRAPED_WITHIN_S" <<'PY' || die "Prometheus did not scrape sdlgm"
import json
import sys
import time
import urllib.parse
import urllib.request

port, within = sys.argv[1], float(sys.argv[2])


def query(q):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            result = json.load(resp)["data"]["result"]
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None


deadline = time.monotonic() + within
while True:
    up, requests = query('up{job="sdlgm"}'), query("sum(sdlgm_requests_total)")
    if up == 1 and requests is not None and requests > 0:
        print(f"up{{job=\"sdlgm\"}} = 1, sum(sdlgm_requests_total) = {requests:g}")
        break
    if time.monotonic() > deadline:
        raise SystemExit(f"after {within:g}s: up = {up}, sum(sdlgm_requests_total) = {requests}")
    time.sleep(2)
PY
step_done "up == 1 and requests counted"

# ---------------------------------------------------------------------------------------------------
step rules
mapfile -t ALERTS < <(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' docker/alerts.yml)
[ "${#ALERTS[@]}" -gt 0 ] || die "no alert found in docker/alerts.yml"
"$PYTHON" - "$HOST_PORT_PROMETHEUS" "$SCRAPED_WITHIN_S" "${ALERTS[@]}" <<'PY' || die "the alert rules are not loaded"
import json
import sys
import time
import urllib.request

port, within, want = sys.argv[1], float(sys.argv[2]), set(sys.argv[3:])


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.load(resp)["data"]


deadline = time.monotonic() + within
while True:  # a rule's health is "unknown" until its group's first evaluation
    rules = {r["name"]: r for g in get("/api/v1/rules?type=alert")["groups"] for r in g["rules"]}
    if set(rules) == want and all(r["health"] == "ok" for r in rules.values()):
        break
    if time.monotonic() > deadline:
        raise SystemExit(f"after {within:g}s: rules {({n: r['health'] for n, r in rules.items()})}, want {sorted(want)}")
    time.sleep(2)
firing = [a["labels"]["alertname"] for a in get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
if firing:
    raise SystemExit(f"alerts firing on a healthy stack: {firing}")
print(f"{len(rules)} alert rules loaded and evaluated, none firing")
PY
step_done "${#ALERTS[@]} alerts loaded, health ok, none firing"

# ---------------------------------------------------------------------------------------------------
step dashboard
"$PYTHON" - "$HOST_PORT_PROMETHEUS" docker/grafana/dashboards/sdlgm.json "${SDLGM_DEFAULT_MODEL:-kpi5g}" \
  "$SCRAPED_WITHIN_S" <<'PY' \
  || die "a dashboard query failed against Prometheus"
"""Each panel query as Grafana would send it (its variables filled in), against the stack's Prometheus:
every one answers, and every one whose series all exist has data (rates once two scrapes are in)."""
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

port, path, model, within = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
base = f"http://127.0.0.1:{port}/api/v1"
METRIC = re.compile(r"\b((?:sdlgm|process)_\w+|up)\b(?=[{\[)\s])")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # a bad query is a 400 with Prometheus's error in the body
        return json.load(exc)


def has_series(name):
    return bool(get(f"{base}/series?" + urllib.parse.urlencode({"match[]": name}))["data"])


dashboard = json.load(open(path))
targets = [(p["title"], t["expr"].replace("$__rate_interval", "1m").replace("$model", ".*"))
           for p in dashboard["panels"] for t in p.get("targets", [])]
deadline = time.monotonic() + within
while True:
    failed, missing, no_traffic = [], [], []
    for title, query in targets:
        answer = get(f"{base}/query?" + urllib.parse.urlencode({"query": query}))
        if answer.get("status") != "success":
            failed.append(f"{title}: {query}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            absent = [name for name in METRIC.findall(query) if not has_series(name)]
            (no_traffic if absent else missing).append(f"{title}: {query}" + (f" (no {absent})" if absent else ""))
    if failed:
        raise SystemExit("\n".join(failed))
    if not missing:
        break
    if time.monotonic() > deadline:
        raise SystemExit("no data after %gs although their series exist:\n%s" % (within, "\n".join(missing)))
    time.sleep(2)
for variable in dashboard["templating"]["list"]:
    if variable["type"] == "query":  # label_values(metric, label)
        metric, label = variable["definition"][len("label_values("):-1].split(", ")
        values = get(f"{base}/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric}))["data"]
        if model not in values:
            raise SystemExit(f"variable {variable['name']}: {variable['definition']} gives {values}, not {model}")
print(f"{len(targets)} queries answered, {len(targets) - len(no_traffic)} with data; without (series the smoke's "
      f"traffic makes none of): {no_traffic}")
PY
step_done "every query of docker/grafana/dashboards/sdlgm.json answered, with data where its series exist"

# ---------------------------------------------------------------------------------------------------
step user
uid=$(docker exec "$CID" id -u) || die "docker exec id -u"
[ "$uid" != 0 ] || die "the service runs as root"
step_done "uid $uid"

# ---------------------------------------------------------------------------------------------------
step stop
t0=$(date +%s.%N)
docker stop -t "$GRACE_S" "$CID" >/dev/null || die "docker stop"
stop_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
code=$(docker inspect --format '{{.State.ExitCode}}' "$CID")
awk -v s="$stop_s" -v g="$GRACE_S" 'BEGIN {exit !(s < g)}' || die "stop took ${stop_s}s, grace is ${GRACE_S}s"
[ "$code" = 0 ] || die "exit code $code after SIGTERM (137 means it was killed)"
step_done "exited 0 after SIGTERM in ${stop_s}s"

# ---------------------------------------------------------------------------------------------------
step down
label=com.docker.compose.project=$PROJECT
# Every volume the stack mounted, anonymous ones included (they carry no project label).
mapfile -t stack_volumes < <(docker ps -aq --filter "label=$label" \
  | xargs -r docker inspect --format '{{range .Mounts}}{{if .Name}}{{println .Name}}{{end}}{{end}}' | sort -u | sed '/^$/d')
"${COMPOSE[@]}" down -v --remove-orphans --timeout "$GRACE_S" || die "docker-compose down"
STACK_UP=0
left="$(docker ps -aq --filter "label=$label") $(docker network ls -q --filter "label=$label")"
for volume in "${stack_volumes[@]}"; do
  if docker volume inspect "$volume" >/dev/null 2>&1; then left+=" volume:$volume"; fi
done
[ -z "${left// /}" ] || die "left behind: $left"
step_done "no container, network or volume left"
log "sdlgm:latest is ${IMAGE_MB} MB"
