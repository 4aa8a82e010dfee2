# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing. torch is pinned here (CPU build on disk);
# the package metadata keeps a range, so nothing else pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[torch,dev]"
	touch $(STAMP)

# The docs extra on top of the set-up above (Sphinx, numpydoc, sphinx-gallery,
# pydata-sphinx-theme); its own stamp so `make test` does not install it.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -e ".[torch,dev,docs]"
	touch $(DOCS_STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/plot_quickstart.py

test: $(STAMP)
	$(PY) -m ruff check .
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -n 2

# pyDVL 0.10.0 pins numpy<2 but runs on numpy 2: install its influence
# dependencies under constraints that keep numpy/torch, then pyDVL itself.
bench: $(STAMP)
	mkdir -p build
	$(PY) -m pip freeze | grep -iE '^(numpy|torch|scipy|scikit-learn)==' > build/constraints.txt
	$(PY) -m pip install -c build/constraints.txt "pyDeprecate>=0.3.2" \
	    "more-itertools>=9.0.0" "pandas>=1.3" "cvxpy>=1.3.0" psutil \
	    "numcodecs<0.16.0" "dask>=2023.5.0" "distributed>=2023.5.0" "zarr>=3,<4"
	$(PY) -m pip install --no-deps "pydvl==0.10.0"
	$(PY) -m pip install -c build/constraints.txt "cleanlab==2.9.0"
	# kronfluence requires torchvision, which it never imports: install its
	# other requirements under the constraints, then kronfluence alone.
	$(PY) -m pip install -c build/constraints.txt "accelerate>=0.31.0" \
	    "einops>=0.8.0" "einconv>=0.1.0" "opt-einsum>=3.3.0" "safetensors>=0.4.2"
	$(PY) -m pip install --no-deps "kronfluence==1.0.1"
	$(PY) benchmarks/loo_fidelity.py
	$(PY) benchmarks/backends.py
	$(PY) benchmarks/bae_pbrf.py
	$(PY) benchmarks/noisy_labels.py
	$(PY) benchmarks/better_hessians.py
	$(PY) benchmarks/model_families.py
	$(PY) benchmarks/newton.py
	$(PY) benchmarks/diagnostics.py
	$(PY) benchmarks/networks.py
	$(PY) benchmarks/network_size.py
	$(PY) benchmarks/cnn_curvature.py
	$(PY) benchmarks/scaling.py --out build/scaling.md
	$(PY) benchmarks/dask_blockwise.py

# The site in doc/_build/html; warnings are errors, every example executes.
docs: $(DOCS_STAMP)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MPLBACKEND=Agg \
	    $(PY) -m sphinx -b html -W --keep-going doc doc/_build/html

clean:
	rm -rf $(VENV) build *.egg-info doc/_build doc/generated doc/auto_examples \
	    doc/api.rst doc/sg_execution_times.rst
