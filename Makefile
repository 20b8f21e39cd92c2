# Entry points: make setup | test | bench | bench-gpu | demo | lint
PY_SYS ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup venv weights test test-fast lint bench bench-gpu demo lock clean

setup: venv weights  ## virtualenv + pinned dependencies + default weights

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-ray.txt
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install --no-deps -r requirements.txt
	# the optional Ray extra (--ray), for its tests; the submission image does not carry it
	$(PY) -m pip install --no-deps -r requirements-ray.txt
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

bench:  ## decode floor, preprocessing with/without SyncNet, SyncNet before/after, offset agreement, run.sh videos/min
	$(PY) -m submission.bench

bench-gpu:  ## run.sh videos/s on a GPU: torch fp32/fp16, ONNX Runtime CUDA (says so and stops without CUDA)
	$(PY) -m submission.bench_gpu

demo:  ## synthetic data → preprocess → train → export → run.sh → AUC
	$(PY) -m train.demo

lock:  ## re-resolve requirements.in into the pinned requirements.txt (see its header)
	@echo "see requirements.txt header: install requirements.in in a fresh venv, keep one OpenCV, pip freeze"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
