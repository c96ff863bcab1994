# One obvious way to run each thing. `make help` lists the targets.
PYTHON ?= python3
PORT ?= 8000
HOST ?= 127.0.0.1
VENV := .venv
PERF_ANALYZER := .tools/perf_analyzer/perf_analyzer
TRITON_SDK_WHEEL := tritonclient==2.39.0
CUDART_WHEEL := nvidia-cuda-runtime-cu12==12.4.127
SERVE_VENV := .venv-serve
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help venv venv-serve tools bench-tools test lint mutation serve bench bench-bulk bench-run-rows overload soak default-model mnist-model reproduce-table1 reproduce-table2 reproduce-table3 reproduce-timing reproduce-figures reproduce-kpi kpi-report lock k8s docker-smoke clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# The serving environment holds the pinned serve packages and no sdlgm distribution: `python -m service`
# runs bundle/ and service/ from the checkout, as the image runs them from /app.
$(SERVE_VENV)/.serve-extra-installed: docker/serve.lock
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --upgrade pip
	$(SERVE_VENV)/bin/pip install -q -r docker/serve.lock
	touch $@

venv: $(VENV)/.installed ## the development environment (train + serve + test tools) in .venv

venv-serve: $(SERVE_VENV)/.serve-extra-installed ## the serving environment alone (docker/serve.lock, no torch) in .venv-serve

# Debian tools the tests run, as path:package: promtool (tests/test_alerts.py; in the prometheus package),
# chromium and chromedriver (tests/test_status_page.py).
DEBIAN_TOOLS := /usr/bin/promtool:prometheus /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver

tools: ## install the Debian tools the tests need when missing: promtool, chromium, chromium-driver (as root; about a minute)
	@missing=""; for t in $(DEBIAN_TOOLS); do [ -x "$${t%%:*}" ] || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "missing:$$missing; as root: apt-get install -y --no-install-recommends$$missing" >&2; exit 1; \
		fi; \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# wrk (Debian's package) is the HTTP load generator of `make bench` and of its test: installed from apt when
# missing, as .ci/docker_smoke.sh installs Docker; without root it says what to install.
bench-tools: $(PERF_ANALYZER) ## install wrk from Debian when missing (the load generator of make bench), and Triton's perf_analyzer under .tools/
	@command -v wrk >/dev/null || { \
		[ "$$(id -u)" -eq 0 ] || { echo "wrk is missing and installing it needs root: apt-get install -y wrk" >&2; exit 1; }; \
		echo "installing wrk from Debian"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || { echo "apt-get install wrk failed" >&2; exit 1; }; }
	@wrk --version 2>&1 | head -1

# Triton's perf_analyzer, the V2 load generator operators already use (docs/serving.md): the binary that
# tritonclient's wheels carried up to 2.39.0 (PyPI's `perf-analyzer` is a placeholder), with the CUDA
# runtime library it links (from NVIDIA's wheel; it runs on a CPU-only machine too) and Debian's libb64.

$(PERF_ANALYZER): | venv
	@dpkg -s libb64-0d >/dev/null 2>&1 || { \
		[ "$$(id -u)" -eq 0 ] || { echo "libb64-0d is missing and installing it needs root: apt-get install -y libb64-0d" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null 2>&1 || \
		{ echo "apt-get install libb64-0d failed" >&2; exit 1; }; }
	rm -rf .tools/perf_analyzer && mkdir -p .tools/perf_analyzer/wheels
	$(VENV)/bin/pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 --platform manylinux2014_x86_64 \
		-d .tools/perf_analyzer/wheels '$(TRITON_SDK_WHEEL)' '$(CUDART_WHEEL)'
	cd .tools/perf_analyzer && $(CURDIR)/$(VENV)/bin/python -c "import sys, zipfile, pathlib; \
		[zipfile.ZipFile(w).extractall('x') for w in pathlib.Path('wheels').glob('*.whl')]" && \
		mkdir -p bin lib && mv x/tritonclient-*.data/data/bin/perf_analyzer bin/ && mv x/nvidia/cuda_runtime/lib/libcudart.so.12 lib/ && \
		chmod +x bin/perf_analyzer && rm -rf x wheels
	printf '%s\n' '#!/bin/sh' 'here=$$(dirname "$$0")' \
		'LD_LIBRARY_PATH="$$here/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" exec "$$here/bin/perf_analyzer" "$$@"' > $@
	chmod +x $@
	@$@ --version >/dev/null 2>&1 || $@ -h 2>&1 | grep -q "perf_analyzer" || { echo "perf_analyzer does not run" >&2; exit 1; }

test: venv venv-serve tools bench-tools ## run the whole test suite (creates both environments and installs the Debian tools first: promtool, chromium, wrk)
	$(VENV)/bin/pytest

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

mutation: venv ## mutation testing (mutmut, [tool.mutmut] in pyproject.toml) of the codes, inference and evaluation; slow, not in CI
	rm -rf mutants && mkdir mutants
	env -u PYTHONPATH SDLGM_DATA_DIR=$${SDLGM_DATA_DIR:-$(abspath ../shared/data)} OMP_NUM_THREADS=1 \
		$(VENV)/bin/mutmut run --max-children $${MUTMUT_CHILDREN:-2} > mutants/run.log 2>&1 \
		|| (tail -c 4000 mutants/run.log; exit 1)
	$(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json
	@echo "per file:"
	@$(VENV)/bin/mutmut results --all=true | awk -F': ' '{f = $$1; sub(/^ +/, "", f); sub(/\.[^.]*$$/, "", f); \
		n[f " " $$2]++} END {for (k in n) print "  " k, n[k]}' | sort
	@echo "survivors:" && $(VENV)/bin/mutmut results

serve: venv-serve ## serve models/ (the default kpi5g bundle) on $(HOST):$(PORT) with no torch installed
	SDLGM_HOST=$(HOST) SDLGM_PORT=$(PORT) $(SERVE_VENV)/bin/python -m service

bench: venv bench-tools ## the serving figures against their references with wrk (docs/results/serving.json, docs/serving.md)
	$(PY) benchmarks/serve_bench.py --doc docs/serving.md

bench-bulk: venv ## bulk coding throughput: sdlgm encode at 1 and 2 threads, the Ray job at 1 and 2 workers (docs/results/bulk.json)
	$(PY) benchmarks/bulk_bench.py

bench-run-rows: venv ## encode vectors/s and RSS of models/kpi5g at several rows per onnxruntime run (docs/results/run_rows.json)
	$(PY) benchmarks/run_rows.py --out docs/results/run_rows.json

overload: venv ## 256 clients of 1024-vector JSON batches at once: shedding, /healthz latency, RSS (docs/results/overload.json)
	$(PY) benchmarks/overload.py --out docs/results/overload.json

soak: venv bench-tools ## 100,000 mixed requests (encode 1 and 64, decode, predict) at 16 connections: errors, p50/p99, RSS growth (docs/results/soak.json)
	$(PY) benchmarks/soak.py --out docs/results/soak.json

default-model: venv ## retrain and export the committed default bundle models/kpi5g
	$(VENV)/bin/sdlgm train --config configs/kpi5g.yaml --out runs/kpi5g
	$(VENV)/bin/sdlgm export --run runs/kpi5g --out models/kpi5g

mnist-model: venv ## Table I's best SDLGM row 9 (100k iterations, trained unless runs/table1/9 holds it) exported as models/mnist 2.0.0
	$(PY) benchmarks/table1.py --only 9 --reuse
	$(VENV)/bin/sdlgm export --run runs/table1/9 --out models/mnist --name mnist --version 2.0.0

reproduce-table1: venv ## Table I on binarized MNIST: SDLGM beside the Gumbel-Softmax VAE (about an hour here)
	$(PY) benchmarks/table1.py

# SETS="birds mine=train.arff,test.arff,mine.xml" runs other Mulan sets too (benchmarks/table2.py --sets);
# EXPORT=models writes each SDLGM variant's rerun-0 bundle there, served by /predict with its threshold;
# OBJECTIVES are the inner-CV criteria (mean: one model for all columns; micro, harmonic: one per column).
# GRID=wide ENSEMBLE=3 RULES=per-label are the searched options (docs/results.md, Table II).
OBJECTIVES ?= mean micro harmonic
GRID ?= default
ENSEMBLE ?= 1
RULES ?= global
reproduce-table2: venv ## Table II: SDLGM-Dis/Gen/Con vs logistic, softmax, sparsemax on Emotions, Birds, CAL500 (SETS=..., EXPORT=DIR)
	$(PY) benchmarks/table2.py --objectives $(OBJECTIVES) --grid $(GRID) --ensemble $(ENSEMBLE) --rules $(RULES) \
		$(if $(SETS),--sets $(SETS)) $(if $(EXPORT),--export $(EXPORT))
	$(PY) benchmarks/table2_report.py

reproduce-table3: venv ## Table III: counting digits, SDLGM vs a random forest (MSE of the count vector)
	$(PY) benchmarks/table3.py

reproduce-timing: venv ## ms per training iteration: SDLGM vs the Gumbel-Softmax VAE, batch 100
	$(PY) benchmarks/timing.py

reproduce-figures: venv ## Figures 3-5 as PNG under docs/
	$(PY) benchmarks/figures.py

reproduce-kpi: venv ## 5G KPI rate-distortion: the SDLGM points against the codecs at matched bytes (resumable)
	$(PY) benchmarks/kpi_rd.py --runs runs/kpi

kpi-report: venv ## rebuild docs/kpi.md and its plot from docs/results/kpi_rd.json, without rerunning the study
	$(PY) benchmarks/kpi_report.py

lock: venv ## re-pin the images' packages: docker/serve.lock and docker/gpu.lock from pyproject's extras
	$(PY) docker/lock.py

k8s: venv ## render deploy/k8s with the pinned kustomize and validate every object offline (tests/test_k8s.py)
	$(VENV)/bin/pytest -q tests/test_k8s.py

docker-smoke: ## build the image and bring the compose stack up for real (installs Docker from Debian if missing)
	bash .ci/docker_smoke.sh

clean: ## remove environments and run outputs
	rm -rf $(VENV) $(SERVE_VENV) runs .pytest_cache .mypy_cache .ruff_cache
