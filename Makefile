# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing. torch is pinned here (CPU build on disk);
# the package metadata keeps a range, so nothing else pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[torch,dev]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/plot_quickstart.py

test: $(STAMP)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -n 2

bench: $(STAMP)
	$(PY) -m pip install ".[bench]"
	$(PY) benchmarks/loo_fidelity.py

clean:
	rm -rf $(VENV) build *.egg-info
