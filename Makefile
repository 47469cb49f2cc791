# The two commands of the README. Both set up .venv first (python3 -m fplab.install: creates it,
# installs fplab with constraints.txt, and repairs a torch / torchvision pair that cannot load
# each other), then:
#   make book   execute every notebook (fast profile) with papermill, build the site, print where
#   make test   the whole test suite: unit tests, chapter 1 under papermill, book build and browser
#               test, then nbval: every chapter executed once, its guarded outputs compared with
#               the committed ones
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# The committed notebook outputs come from single-threaded runs (`make refresh`): torch's CPU
# results depend on the thread count, so the test suite (which compares them with nbval) runs
# single-threaded too, and so does `make book`: the site you build shows the committed numbers,
# and the models and results that ship (fplab/weights, fplab/results, keyed by the thread count
# among the rest) serve it, so it takes minutes, not the better part of an hour.
# (`python -m fplab run` on its own uses every core and computes what is not shipped.)
# They also come from portable numerics (fplab.numerics): ATen's AVX2 kernels, MKL's reproducible
# AVX2 branch and no oneDNN, so that the same seed trains the same weights on any x86-64 CPU
# (without it, two machines of the same kind here trained the speech BadNet to 98.3 and 97.3%).
SERIAL := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 FPLAB_PORTABLE=1 ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2
# nbval re-runs the committed notebooks, whose outputs carry no progress bars (fplab.runner drops
# widget outputs after papermill): tqdm is switched off for it (TQDM_DISABLE, tqdm >= 4.66).
NBVAL_ENV := TQDM_DISABLE=1
NBVAL := --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# A relative FPLAB_DATA / FPLAB_CACHE (the README's `export FPLAB_DATA=../shared/datasets`) is
# read from where make was started, before any kernel starts in notebooks/ (papermill and nbval
# both start kernels there; fplab.runner resolves them too, for `python -m fplab`).
absolute = $(shell $(PYTHON) -c 'import os, sys; print(os.path.abspath(os.path.expanduser(sys.argv[1])))' "$(1)")
ifneq ($(FPLAB_DATA),)
export FPLAB_DATA := $(call absolute,$(FPLAB_DATA))
endif
ifneq ($(FPLAB_CACHE),)
export FPLAB_CACHE := $(call absolute,$(FPLAB_CACHE))
endif

.PHONY: venv book test nbval refresh ship-weights ship-results retrain-shipped benchmark clean

venv:
	@$(PYTHON) -m fplab.install $(VENV)

book: venv
	$(SERIAL) $(PY) -m fplab book

test: venv
	$(SERIAL) $(PY) -m pytest tests
	$(SERIAL) $(NBVAL_ENV) $(PY) -m pytest $(NBVAL) notebooks

nbval: venv  # the second half of `make test` alone: the committed notebooks re-run and compared
	$(SERIAL) $(NBVAL_ENV) $(PY) -m pytest $(NBVAL) notebooks

refresh: venv  # maintainers: re-execute notebooks/ in place (commit the result)
	$(SERIAL) $(PY) -m fplab run --in-place $(if $(ONLY),--only $(ONLY))

ship-weights: venv  # maintainers: retrain the shipped models and map (commit fplab/weights)
	$(SERIAL) $(PY) -m fplab ship-weights $(if $(ONLY),--only $(ONLY))

ship-results: venv  # maintainers: every notebook from an empty cache, then ship what it computed
	rm -rf _build/ship-results-cache
	FPLAB_CACHE=$(CURDIR)/_build/ship-results-cache FPLAB_NO_SHIPPED_RESULTS=1 $(SERIAL) $(NBVAL_ENV) $(PY) -m fplab run
	FPLAB_CACHE=$(CURDIR)/_build/ship-results-cache $(PY) -m fplab ship-results

retrain-shipped: venv  # retrain every shipped model and compare (bit-identical under SERIAL)
	$(SERIAL) $(PY) -m fplab retrain-shipped $(if $(ONLY),--only $(ONLY))

benchmark: venv
	$(PY) -m fplab benchmark

clean:
	rm -rf _build
