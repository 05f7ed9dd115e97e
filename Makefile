# Two entry points for a fresh machine (Python 3.11): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/insnet predict examples/data/Ba3ZnRu2O9.cif --instrument SEQUOIA --ei 160 --temperature 5 -o out/demo_predict_sequoia.nxs --plot out/demo_predict_sequoia.png
	$(VENV)/bin/insnet simulate examples/data/phonondb/mp-1818-20180417 --instrument VISION -o out/demo_vision.nxs --plot out/demo_vision.png
	$(VENV)/bin/insnet simulate examples/data/phonondb/mp-1818-20180417 --instrument SEQUOIA --ei 160 -o out/demo_sequoia.nxs --plot out/demo_sequoia.png

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_live.py
	$(PY) bench/bench_dataset.py

clean:
	rm -rf $(VENV) out
