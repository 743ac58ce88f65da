# Two commands on a fresh machine:
#   make demo   set everything up, run every head on the bundled photos (overlays, JSON, an MCAP bag)
#   make test   set everything up, run the test suite
#   make ros    only the ROS 2 part: Jazzy's rclpy and messages from PyPI, vision_msgs and foxglove_msgs generated
#   make screenshots  redraw the docs' pictures, docs/images/*.png, from a bundled photo
# Each creates (or reuses) the virtual environment $(VENV) and installs what it needs.

PYTHON ?= python3
VENV ?= .venv
# Pinned so development machines take their local CPU wheel; on a GPU machine the
# same pin resolves to PyPI's CUDA build. Override with `make TORCH=... test`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv ros demo test screenshots clean

venv: $(STAMP)

$(STAMP): setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# ROS 2 Jazzy from PyPI wheels, so the node and its tests run without a ROS install. The script
# caches its work in the venv (keyed on the wheels and the vision_msgs and foxglove_msgs definitions)
# and, where cmake or a compiler is missing, says so and exits 0: the node tests then skip, naming the reason.
# Any other failure (pip, the build) stops `make test`.
ros: $(STAMP)
	$(BIN)/python scripts/setup_ros_wheels.py

demo: $(STAMP)
	$(BIN)/dinov3 demo

# First the reference comparisons (pytest -m reference) on another CPU kernel path: ATen's portable
# kernels, oneDNN limited to SSE4.1, one thread (their tolerances: test/tolerances.py). Then the whole
# suite on this machine's own path, so the last line is the whole suite's summary.
test: ros
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m reference
	$(BIN)/python -m pytest

screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) build dist *.egg-info
