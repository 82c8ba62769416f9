# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv if it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[ssl,test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m evaluation.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_spacings.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
