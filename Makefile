# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# MNIST comes from SCANDIGITS_MNIST_DIR; a data folder shared next to the checkout is used
# when present, otherwise the trainer falls back to the standard keras download.
SCANDIGITS_MNIST_DIR ?= $(abspath $(wildcard ../shared/data/mnist))
export SCANDIGITS_MNIST_DIR

.PHONY: install demo lint test clean

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

clean:
	rm -rf $(VENV) scandigits-demo .pytest_cache .ruff_cache
