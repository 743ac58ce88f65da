# Two commands on a fresh machine:
#   make demo   set everything up, run every head on the bundled photos (overlays, JSON, an MCAP bag)
#   make test   set everything up, run the test suite
# Both create (or reuse) the virtual environment $(VENV) and install what it needs.

PYTHON ?= python3
VENV ?= .venv
# Pinned so development machines take their local CPU wheel; on a GPU machine the
# same pin resolves to PyPI's CUDA build. Override with `make TORCH=... test`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test clean

venv: $(STAMP)

$(STAMP): setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dinov3 demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build dist *.egg-info
