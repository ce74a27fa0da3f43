# Quick start: `make demo` runs the product, `make test` runs the whole suite. Both bootstrap .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv protos demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[agent,collector,dev]' --config-settings editable_mode=compat
	touch $(STAMP)

# Regenerates the wire code from protos/*.proto; the output is committed so a fresh clone needs no protoc.
protos: venv
	$(BIN)/python -m protos.generate

demo: venv
	$(BIN)/python -m collector.demo

test: venv
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

bench: venv
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
