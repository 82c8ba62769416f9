# Two entry points for a newcomer: `make demo` and `make test` (`make docs` builds the HTML docs).
# Both create .venv if it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# HTML docs from docs/ (offline); warnings are errors, so CI (make test) fails on any
SPHINX := $(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html

.PHONY: demo test docs lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[ssl,test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m evaluation.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(SPHINX)
	$(PY) -m pytest -n 2 -q

docs: $(STAMP)
	$(SPHINX)
	@echo "docs: open docs/_build/html/index.html"

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_spacings.py

# mutation testing of one module against its tests (docs/mutation.md); slow, not part of `test`
.PHONY: mutate
MUTANTS ?= 40
SEED ?= 0
mutate: $(STAMP)
	$(if $(MODULE),,$(error give a module: make mutate MODULE=entropylib/spacings.py))
	$(PY) mutation/mutate.py $(MODULE) --max-mutants $(MUTANTS) --seed $(SEED) $(if $(TESTS),--tests $(TESTS)) $(if $(K),-k "$(K)")

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis docs/_build
