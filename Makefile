# Two set-up commands: `make run` and `make test`. Everything CI needs is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
HEADLINE ?= --params 70B --dtype int4 --ctx 8192

.PHONY: run test test-fast fuzz test-browser bench accuracy lint install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,calibrate,plot]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/vramest $(HEADLINE)

test: install-dev
	$(BIN)/python -m pytest -q

# the inner loop: everything but the torch-backed traces and calibrations (about a minute)
test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

# The hostile-input suite at length: FUZZ_N inputs per target (the test run uses a few dozen),
# with each target's counts printed. FUZZ_SEED=N for another sequence.
FUZZ_N ?= 10000
FUZZ_SEED ?= 24
fuzz: install-dev
	VRAMEST_FUZZ_N=$(FUZZ_N) VRAMEST_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest -q -s tests/test_fuzz.py

# The HTML report and `vramest web` in a real browser: installs Debian's chromium and its
# WebDriver (chromium-driver, which drives the web page) where either is missing.
test-browser: install-dev
	@{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } && \
		command -v chromedriver >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
			chromium-driver; }
	VRAMEST_BROWSER_TESTS=1 $(BIN)/python -m pytest -q -m browser tests/test_report_browser.py \
		tests/test_web_browser.py

lint: install-dev
	$(BIN)/ruff check vramest tests benchmarks scripts
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python benchmarks/run.py
	@# the fitted gloo alpha/beta against a direct all-reduce timing (issue 22), on this CPU
	VRAMEST_TIMING_TESTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_calibration_distributed.py -k direct_timing

accuracy: install-dev
	$(BIN)/python -m vramest.validation.accuracy

clean:
	rm -rf $(VENV) build *.egg-info
