# The two commands of the README. Both create .venv and install fplab into it on first use.
#   make book   execute every notebook (fast profile) with papermill, build the site, print where
#   make test   the whole test suite: unit tests, notebooks under papermill, book build, nbval
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# The committed notebook outputs come from single-threaded runs (`make refresh`): torch's CPU
# results depend on the thread count, so the test suite (which compares them with nbval) runs
# single-threaded too. `make book` uses every core.
SERIAL := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: book test refresh benchmark clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e ".[course]"
	touch $@

book: $(VENV)/.installed
	$(PY) -m fplab book

test: $(VENV)/.installed
	$(SERIAL) $(PY) -m pytest tests
	$(SERIAL) $(PY) -m pytest --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks

refresh: $(VENV)/.installed  # maintainers: re-execute notebooks/ in place (commit the result)
	$(SERIAL) $(PY) -m fplab run --in-place

benchmark: $(VENV)/.installed
	$(PY) -m fplab benchmark

clean:
	rm -rf _build
