# The two commands of the README. Both create .venv and install fplab into it on first use.
#   make book   execute every notebook (fast profile) with papermill, build the site, print where
#   make test   the whole test suite: unit tests, notebooks under papermill, book build, nbval
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: book test benchmark clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e ".[course]"
	touch $@

book: $(VENV)/.installed
	$(PY) -m fplab book

test: $(VENV)/.installed
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks

benchmark: $(VENV)/.installed
	$(PY) -m fplab benchmark

clean:
	rm -rf _build
