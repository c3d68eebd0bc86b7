# Two entry points: `make run` (the main job on the embedded data) and `make test`.
# Both create .venv and install what they need; torch is pinned by constraints.txt so pip never
# resolves a multi-GB CUDA build by itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt

.PHONY: install dev system-deps run study quick train test lint clean bench bench-keras

$(VENV)/.base: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) -e '.[dev,ray]'  # ray: the Ray executor's tests run instead of skipping
	touch $@

install: $(VENV)/.base
dev: $(VENV)/.dev

run: study

study: install
	$(VENV)/bin/sandbag study --preset standard

quick: install
	$(VENV)/bin/sandbag study --preset quick

train: install
	$(VENV)/bin/sandbag train --data mnist-5k --model ref-cnn --reg l2=1e-3 --reg dropout=0.4 --epochs 15

# Debian's Chromium + ChromeDriver (the HTML report test), Fashion-MNIST and a Hangul font (Korean figures:
# fonts-nanum), where apt is available as root; elsewhere the tests that need them are skipped with a reason.
system-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	    && [ -d /usr/share/datasets/fashion-mnist ] && [ -d /usr/share/fonts/truetype/nanum ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver dataset-fashion-mnist fonts-nanum >/dev/null) || echo "note: apt-get install failed"; \
	else echo "note: no apt-get as root: tests that need Chromium, Fashion-MNIST or a Hangul font will be skipped"; fi

test: dev system-deps
	$(VENV)/bin/lint-imports --no-cache  # the one-way layers in pyproject.toml
	$(PY) -m pytest -q

# Every benchmark (benchmarks/*.py), interleaved against its baseline; rewrites benchmarks/RESULTS.md. Slow (the
# standard study is one of them): run it on an idle machine. `make bench-keras` first adds the Keras peer's venv.
bench: install
	$(PY) benchmarks/run_all.py

bench-keras: install
	$(PY) benchmarks/keras_peer.py --setup

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
