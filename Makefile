# The two commands of the README: `make demo` and `make test`. Both install into .venv first.
# `make up` / `make down`: the production stack of docker-compose.yml (needs Docker).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install system-packages demo test ui bench clean up down

# torch first, pinned to the CPU build (plain `torch` would pull a multi-GB CUDA build), then the
# package with the versions in constraints.txt (editable: setuptools' notice that a folder named
# like the package may shadow it is the point of an editable install here, so it is not shown).
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# infinity-emb, the served model of the tests and bench/embed.py, in its own venv: it pins
# numpy<2, sentence-transformers<4 and click<8.2. Built once, reused.
INFINITY_VENV := .venv-infinity
$(INFINITY_VENV)/.installed: ops_pipelines_tests/infinity-requirements.txt
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFINITY_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(INFINITY_VENV)/bin/python -m pip install --quiet -r ops_pipelines_tests/infinity-requirements.txt
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ops-pipelines demo --source folder:$(CURDIR)/docs

# The system programs the tests run for real: Prometheus and promtool (metrics, alert rules), nginx
# (the authenticating proxy) and Chromium (the UI screenshots, through Playwright). Debian's
# packages, installed once (we are root); their services are not started.
SYSTEM_PACKAGES := prometheus nginx chromium fonts-dejavu-core
system-packages:
	@missing=; for tool in prometheus promtool nginx chromium; do \
		command -v $$tool >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin" command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for$$missing: $(SYSTEM_PACKAGES)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	fi

test: install $(INFINITY_VENV)/.installed system-packages
	$(BIN)/python -m pytest

# Run from DAGSTER_HOME: Dagster warns about a dagster.yaml in the current folder that is not
# DAGSTER_HOME's (the repository's own, which this target copies there). Given a workspace file,
# dg dev stays there; without one it would change into the project folder, next to that file.
ui: install $(DAGSTER_HOME)/dagster.yaml
	cd $(DAGSTER_HOME) && $(CURDIR)/$(BIN)/dg dev -w $(CURDIR)/workspace.yaml -h 127.0.0.1 -p 3000

bench: install
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/refresh.py
	$(BIN)/python bench/export.py

clean:
	rm -rf $(VENV) $(INFINITY_VENV) $(DAGSTER_HOME) .pytest_cache

# The production stack: PostgreSQL, Qdrant, MinIO, and the Dagster user-code server, webserver and
# daemon built from the Dockerfile. Secrets come from .env (see .env.example).
DOCKER ?= docker

define need_compose
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "make $@: no '$(DOCKER)' command: install Docker Engine with the compose plugin (https://docs.docker.com/engine/install/), or run embedded with 'make demo' / 'make ui'" >&2; exit 1; }
	@$(DOCKER) compose version >/dev/null 2>&1 || { echo "make $@: '$(DOCKER) compose' is missing: install the Docker Compose v2 plugin" >&2; exit 1; }
endef

up:
	$(need_compose)
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make up: no Docker engine answers: start the Docker daemon (or check your access to its socket)" >&2; exit 1; }
	@test -f .env || test -n "$$POSTGRES_PASSWORD" || { echo "make up: no .env: cp .env.example .env and set POSTGRES_PASSWORD and MINIO_ROOT_PASSWORD, and UI_HTPASSWD_FILE (the UI users)" >&2; exit 1; }
	$(DOCKER) compose up -d --build
	@echo "Dagster UI: http://localhost:3000 (login: the users of UI_HTPASSWD_FILE); read-only: http://127.0.0.1:3001  (make down stops it; data stays in the compose volumes)"

down:
	$(need_compose)
	$(DOCKER) compose down
