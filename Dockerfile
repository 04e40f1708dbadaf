# syntax=docker/dockerfile:1
# Serving images for afrl; no torch in any of them (only the builder stage has it).
#
#   target serve-baked (default)  the serving image plus the embedded default model, trained and
#                                 exported by the builder stage (4 to 9 minutes on 2 cores, by CPU)
#   target serve                  the serving image alone: mount an artifact at /models/model
#   --build-arg RUNTIME=cuda      onnxruntime-gpu (CUDA 13 + cuDNN 9 as pip packages) instead of
#                                 onnxruntime; run with --gpus all (host driver for CUDA 13)
#
#   docker build -t afrl:cpu .
#   docker build --target serve -t afrl:serve-cpu .
#   docker build --target serve --build-arg RUNTIME=cuda -t afrl:serve-cuda .
#
# The serve stage runs as uid 10001 and writes nothing outside /tmp, so it runs with a read-only
# root filesystem (Kubernetes: deploy/k8s/deployment.yaml).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY afrl afrl
COPY training training
COPY export export
COPY service service
COPY bench bench
# DL3013: ".[train,export]" is this project; its dependencies' bounds live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir ".[train,export]"
ENV AFRL_HOME=/build
RUN python -c "from afrl.default_model import ensure_default_model; ensure_default_model(print)"

FROM ${PYTHON_IMAGE} AS serve
ARG RUNTIME=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first (they change less often than the code): the serve extra, nothing else.
COPY pyproject.toml README.md ./
COPY deploy/docker/serve_requirements.py deploy/docker/serve_requirements.py
RUN python deploy/docker/serve_requirements.py --runtime "${RUNTIME}" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY afrl afrl
COPY service service
# bench: the `afrl` command line lists every benchmark (modules that import only the standard library)
COPY bench bench
COPY training/__init__.py training/__init__.py
COPY export/__init__.py export/__init__.py
RUN pip install --no-cache-dir --no-deps . \
 && groupadd --gid 10001 afrl \
 && useradd --no-log-init --create-home --uid 10001 --gid 10001 afrl
USER 10001:10001
# AFRL_HOME: the default-model cache, unused when AFRL_MODEL is set; /tmp is the one writable place.
ENV AFRL_MODEL=/models/model \
    AFRL_HOST=0.0.0.0 \
    AFRL_PORT=8000 \
    AFRL_HOME=/tmp/afrl
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
CMD ["afrl", "serve"]

FROM serve AS serve-baked
COPY --from=builder /build/models/default /models/default
ENV AFRL_MODEL=/models/default
