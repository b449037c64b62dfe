# Both entry points set up their own virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TM := $(VENV)/bin/tokenmill
# configs/demo.yaml names the same folders.
DEMO := build/demo

.PHONY: setup browser demo test wheel clean

# The class-data archive of Spark's classes (tokenmill jvm-archive, about a minute
# once) makes every local Spark session start about 4 s faster.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[local,dev,mlflow]'
	$(TM) jvm-archive || echo "tokenmill jvm-archive failed: local Spark sessions start without the archive"
	touch $@

setup: $(VENV)/.installed

# The data-card test renders the report in Debian's headless Chromium.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null)

# The whole pipeline and a short training run on the bundled sample corpus.
demo: setup
	rm -rf $(DEMO)
	$(TM) sample $(DEMO)/raw
	$(TM) run --config configs/demo.yaml
	$(TM) preflight --train-config configs/train_tiny.yaml --shards $(DEMO)/out/shards --run-dir $(DEMO)/run --nproc 2
	@echo "== training the tiny preset: first 150 steps, then a resume from the checkpoint to the end"
	$(TM) train --config configs/train_tiny.yaml --shards $(DEMO)/out/shards --run-dir $(DEMO)/run --nproc 2 --stop-at-step 150
	$(TM) train --config configs/train_tiny.yaml --shards $(DEMO)/out/shards --run-dir $(DEMO)/run --nproc 2
	$(TM) generate --checkpoint $(DEMO)/run --prompt "The" --max-new-tokens 40
	$(TM) report $(DEMO)/out --html $(DEMO)/card.html --run-log $(DEMO)/run

# Two workers, a whole file each: one file's Spark jobs, imports and sleeps leave
# a core idle about a quarter of the time, which the other file fills.
test: setup browser
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# The wheel users install, built as the Asset Bundle builds it: from the sdist,
# so nothing an earlier build left in build/lib ships.
wheel: setup
	$(PY) -m build --outdir dist

clean:
	rm -rf build dist .pytest_cache
