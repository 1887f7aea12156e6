# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ncviz-installed
# The exact builds this project is tested with; setup.cfg asks only for ranges.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
TIMM_PIN   := timm==1.0.31

.PHONY: install test test-fast demo bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PINS) 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PINS) $(TIMM_PIN) -e '.[test]' 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -c "import torch, torchvision, nc_viz, pytorch_grad_cam, isal, timm"
	touch $(STAMP)

install: $(STAMP)

# one pytest-xdist worker per core (tests marked `serial` run alone); TEST_JOBS=0 runs in one process
TEST_JOBS ?= auto

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist worksteal

test-fast: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist worksteal -m "not slow"

demo: install
	$(VENV)/bin/ncviz compare samples/multi_*.png -o demo/compare.png --save-maps demo/compare_maps.npz
	$(VENV)/bin/ncviz neurons samples/multi_*.png --top 8 -o demo/neurons.png --json demo/neurons.json
	$(VENV)/bin/ncviz batch samples -o demo/batch
	$(VENV)/bin/ncviz make-data demo/heldout --count 200 --seed 11
	$(VENV)/bin/ncviz evaluate demo/heldout --report demo/evaluate
	@echo "figures are in demo/: compare.png (Figs. 1-2), neurons.png (Fig. 3), batch/index.html (gallery), evaluate/report.md (localisation with paired intervals)"

bench: install
	$(PY) benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) demo build *.egg-info
