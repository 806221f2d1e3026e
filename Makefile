# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# MNIST comes from SCANDIGITS_MNIST_DIR; a data folder shared next to the checkout is used
# when present, otherwise the trainer falls back to the standard keras download.
SCANDIGITS_MNIST_DIR ?= $(abspath $(wildcard ../shared/data/mnist))
export SCANDIGITS_MNIST_DIR
# digits by writers outside MNIST, to adapt and measure on, likewise when present
SCANDIGITS_WRITERS_DIR ?= $(abspath $(wildcard ../shared/data/newwriters))
export SCANDIGITS_WRITERS_DIR

.PHONY: install demo lint test test-fast images images-push clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/scandigits demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# the unit tests alone: no Redis, S3 server, workers, other processes or whole training runs
test-fast: lint
	$(BIN)/python -m pytest -m "not e2e and not slow"

IMAGE ?= scandigits
TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)

images:
	@test -n "$(ENGINE)" || { echo "make images needs docker or podman" >&2; exit 1; }
	$(ENGINE) build -f docker/Dockerfile --build-arg IMAGE_VERSION=$(TAG) \
		--build-arg IMAGE_REVISION=$(shell git rev-parse HEAD) \
		-t $(IMAGE):$(TAG) -t $(IMAGE):latest .

images-push: images
	$(ENGINE) push $(IMAGE):$(TAG)

clean:
	rm -rf $(VENV) scandigits-demo .pytest_cache .ruff_cache
