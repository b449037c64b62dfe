# Both entry points set up their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TM := $(VENV)/bin/tokenmill
# configs/demo.yaml names the same folders.
DEMO := build/demo

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[local,dev,mlflow]'
	touch $@

setup: $(VENV)/.installed

# The whole pipeline and a short training run on the bundled sample corpus.
demo: setup
	rm -rf $(DEMO)
	$(TM) sample $(DEMO)/raw
	$(TM) run --config configs/demo.yaml

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf build .pytest_cache
