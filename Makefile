# The two commands a new user runs: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SPEC   ?= examples/minilm-intent/spec.yaml
STAMP  := $(VENV)/.installed

GEN_SPEC ?= examples/support-gpt/spec.yaml
IMAGE_SPEC ?= examples/digits-gan/spec.yaml
DIFFUSION_SPEC ?= examples/digits-diffusion/spec.yaml

.PHONY: install install-system demo demo-generate demo-image demo-diffusion test test-fast lint format benchmark benchmark-quick soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 resolves to the CPU wheel; any other spec pulls GBs of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian tools the operate tests use: promtool (package prometheus) checks and unit-tests the alerting
# rules, amtool (prometheus-alertmanager) checks the Alertmanager config, nginx (nginx-light) is the
# authenticating proxy. Skipped when present; without root or apt-get
# it says so and those tests skip with the reason.
install-system:
	@if command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 \
	    && { command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx; }; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages prometheus (promtool), prometheus-alertmanager (amtool), nginx-light"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus prometheus-alertmanager nginx-light; } >/dev/null 2>&1 \
	    || echo "warning: apt-get could not install prometheus / nginx-light: the promtool and proxy tests will skip"; \
	else \
	  echo "warning: promtool / amtool / nginx missing and no root apt-get: those tests will skip"; \
	fi

demo: install
	$(BIN)/triton-bundle demo $(SPEC)

# Text generation: train a small decoder on support replies, export with a KV cache, gate, serve, stream.
demo-generate: install
	$(BIN)/triton-bundle demo $(GEN_SPEC)

# Image generation: train a digit generator (no download), export, gate FP16 / INT8 on PSNR / SSIM / a
# digit classifier, serve seed -> PNG, compare with PyTorch over HTTP and gRPC, write a grid of digits.
demo-image: install
	$(BIN)/triton-bundle demo $(IMAGE_SPEC)

# Diffusion: a class-conditional UNet on the digits, served as a DDIM loop calling the UNet (BLS).
demo-diffusion: install
	$(BIN)/triton-bundle demo $(DIFFUSION_SPEC)

test: install install-system
	$(BIN)/python -m pytest -q

test-fast: install install-system
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

benchmark: install
	$(BIN)/python benchmarks/run.py --spec $(SPEC)

benchmark-quick: install
	$(BIN)/python benchmarks/run.py --spec $(SPEC) --quick

soak: install
	$(BIN)/python benchmarks/soak.py --spec $(SPEC) --minutes 10 --load 0.7

clean:
	rm -rf artifacts model_repository/*/ reports build
