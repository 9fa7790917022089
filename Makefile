# polydiff: `make demo` and `make test` set everything up on a fresh machine (Python 3.11).
# Tests run two pytest workers with one torch thread each: two workers with two threads each
# oversubscribe the two cores and run some tests 100x slower.
# The venv is rebuilt only when pyproject.toml, constraints.txt, registry.toml or a
# plugin's pyproject.toml changes (the stamp file records the last successful install).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.polydiff-installed
PLUGIN_PYPROJECTS := $(wildcard plugins/*/pyproject.toml)
PYTEST_ARGS ?=

.PHONY: install demo test bench bench-domains bench-tabular clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt registry.toml $(PLUGIN_PYPROJECTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "polydiff needs Python >= 3.11, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt torch==2.11.0 torchaudio==2.11.0
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	@for path in $$($(PY) -m polydiff.registry_file --paths); do \
		echo "installing plugin $$path"; \
		$(PIP) install --quiet -c constraints.txt -e "$$path" || exit 1; \
	done
	@for requirement in $$($(PY) -m polydiff.registry_file --no-deps); do \
		echo "installing $$requirement without its dependencies"; \
		$(PIP) install --quiet --no-deps -c constraints.txt "$$requirement" || exit 1; \
	done
	@touch $(STAMP)

demo: install
	$(VENV)/bin/polydiff demo

test: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: install
	$(PIP) install --quiet -c constraints.txt -e ".[bench]"
	$(PY) bench/samplers.py
	$(PY) bench/trainer.py
	$(PY) bench/data_fetch.py
	$(PY) bench/discrete.py
	$(PY) bench/oracle_families.py

# The domain benchmarks train models for minutes to hours on a CPU (each script's --help).
bench-domains: install
	$(PIP) install --quiet -c constraints.txt -e ".[bench]"
	$(PY) bench/image_mnist.py
	$(PY) bench/text_shakespeare.py

# SDV (Business Source License, pandas < 3) lives in its own environment, never in .venv.
SDV_VENV := .venv-sdv
$(SDV_VENV)/.installed:
	$(PYTHON) -m venv $(SDV_VENV)
	$(SDV_VENV)/bin/python -m pip install --quiet "sdv==2.0.0"
	@touch $@

bench-tabular: install $(SDV_VENV)/.installed
	$(PY) bench/tabular.py

clean-venv:
	rm -rf $(VENV) $(SDV_VENV)
