# syntax=docker/dockerfile:1
# The submission image.
#   docker build -t avdf .
#   docker run --gpus all -v "$PWD/in:/data/input" -v "$PWD/out:/data/output" avdf
#   docker run --gpus all -v ... avdf -input /data/input/ -output /data/output/submission.csv
# The default command reads /data/input/*.mp4 and writes /data/output/submission.csv.
#
# Build from a checkout where the weights exist (they are git-ignored artifacts):
#   weights/retinaface_mobilenetv2.{safetensors,json}  by `make setup`
#   weights/fusion.{safetensors,json} (+ fusion.onnx)   by training / `python -m train export`
#   weights/syncnet.{safetensors,json}                  optional (no latency features without it)
# The build stops with a message when a required one is missing, and runs `--check` to load them.
#
# torch 2.13.0 from PyPI is a CUDA 13 build whose CUDA libraries come as pip wheels
# (requirements-gpu.txt), so the base is CUDA's small "base" flavour: it carries the settings
# the NVIDIA container runtime needs to expose the GPU; the host driver must support CUDA 13.
ARG CUDA_BASE=nvidia/cuda:13.0.1-base-ubuntu22.04

FROM ${CUDA_BASE} AS python
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/*

FROM python AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/venv \
    && pip install --no-cache-dir pip==26.3
WORKDIR /src
COPY requirements.txt requirements-gpu.txt ./
# Exactly what CI installs (Makefile `venv` target, run by .ci/run): the lock, no resolution.
RUN pip install --no-cache-dir --no-deps -r requirements.txt
# GPU additions, resolved but pinned by the lock (see requirements-gpu.txt).
RUN pip uninstall -y onnxruntime \
    && pip install --no-cache-dir -c requirements.txt -r requirements-gpu.txt

FROM python AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AVDF_WEIGHTS=/app/weights \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin app
WORKDIR /app
COPY pyproject.toml run.sh ./
COPY core/ core/
COPY models/ models/
COPY preprocess/ preprocess/
COPY submission/ submission/
COPY weights/ weights/
RUN for f in fusion.safetensors fusion.json retinaface_mobilenetv2.safetensors retinaface_mobilenetv2.json; do \
        test -f "weights/$f" || { echo "weights/$f is missing: run make setup and train/export before docker build" >&2; exit 1; }; \
    done \
    && python -m compileall -q core models preprocess submission weights \
    && mkdir -p weights/cache /data/input /data/output \
    && chown app:app weights/cache /data/output \
    && python -m submission --check --device cpu
# TensorRT caches the engine it builds for the GPU in weights/cache (writable by app).
USER 1000:1000
ENTRYPOINT ["python", "-m", "submission"]
CMD ["-input", "/data/input/", "-output", "/data/output/submission.csv"]
