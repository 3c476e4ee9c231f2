# Distillation Studio — two commands do everything:
#   make run    install what is missing, build the sample shoes on first use, start the studio
#   make test   install what is missing, run the whole test suite
# Installing is idempotent: a stamp keyed on the requirement files' hash skips pip when nothing changed,
# and one keyed on package-lock.json skips npm (onnxruntime-web, for the exported student's web page).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 7860
APT_PACKAGES := chromium dataset-fashion-mnist
REQ_HASH := $(shell cat requirements.txt requirements-nodeps.txt | sha256sum | cut -c1-16)
PIP_STAMP := $(VENV)/.installed-$(REQ_HASH)
NPM_HASH := $(shell cat package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
NPM_STAMP := node_modules/.installed-$(NPM_HASH)
SAMPLE := data/sample/sample.json
PYTEST_ARGS ?=

export GRADIO_ANALYTICS_ENABLED := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install system-packages node-packages run test bench sample clean-venv

install: $(PIP_STAMP) system-packages node-packages

$(PIP_STAMP): requirements.txt requirements-nodeps.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# Debian packages: Fashion-MNIST (real VAE data) and chromium (browser tests). Installed with apt-get
# when running as root; otherwise a note says what is missing (the features that need them say so too).
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "apt-get install$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; }; \
	  else echo "note: Debian packages missing:$$missing (run 'sudo apt-get install$$missing')"; fi; \
	fi

# onnxruntime-web at the version package-lock.json pins (the export's web bundle copies its wasm build from
# node_modules/). npm ci runs only when node_modules is missing or the lock changed; without npm, as root
# with apt it installs Debian's nodejs + npm first, otherwise a note says what to install.
node-packages: $(NPM_STAMP)

$(NPM_STAMP): package.json package-lock.json
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "apt-get install nodejs npm"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >/dev/null 2>&1 || \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm; }; \
	  fi; \
	fi; \
	if command -v npm >/dev/null; then \
	  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else echo "note: npm is missing (run 'sudo apt-get install nodejs npm', then make install): exports are written without their web bundle"; fi

# Built on first use; a build that was interrupted (sample.json without "complete": true) resumes.
sample: $(PIP_STAMP)
	@grep -qs '"complete": true' $(SAMPLE) || $(BIN)/python -m engine data sample --count 101 --seed 0 --out data/sample

run: install sample
	$(BIN)/python app.py --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	@set -e; for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f; echo; done

clean-venv:
	rm -rf $(VENV)
