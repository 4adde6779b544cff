# Saliency Viewer: `make run` installs and starts the viewer on the bundled samples; `make test`
# installs and runs the whole test suite. Both create .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint docs bench installer installer-test installer-check clean

# pip (not uv/poetry): the torch range admits the 2.14.1 build that pip finds on local disk here.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# Quantus (the stability tests' oracle) without its opencv-python, which would replace grad-cam's
	# headless OpenCV and put a second set of Qt plugins beside PySide6's (see pyproject.toml).
	$(BIN)/python -m pip install --quiet --no-deps "quantus>=0.6"
	$(BIN)/python -m pip install --quiet "cachetools>=5"  # quantus' one dependency the test extra lacks
	touch $(STAMP)

install: $(STAMP)

# --check-desktop first: missing system libraries or no display get a message and exit 1, not a Qt abort.
run: $(STAMP)
	$(BIN)/saliency-viewer --check-desktop
	$(BIN)/saliency-viewer --demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The documentation site in site/ (mkdocs.yml; strict: a broken link or table fails the build).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python tests/perf/bench_io.py
	$(BIN)/python tests/perf/bench_explain.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python tests/perf/bench_gui.py

# The standalone app (PyInstaller, CPU torch) in dist/SaliencyViewer, a Linux tarball beside it,
# and three timed starts; installer-test builds it and runs the frozen app's --self-test.
installer:
	$(PYTHON) installer/build.py --startup 3

installer-test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m slow tests/installer

# What CI runs after the tests (.ci/run): build the bundle (no tarball) and run its --self-test.
installer-check:
	QT_QPA_PLATFORM=offscreen $(PYTHON) installer/build.py --no-archive --self-test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist site
