# syntax=docker/dockerfile:1
# Two stages: the builder trains and exports the embedded default model with
# torch; the serving image has no torch, only ONNX Runtime and the artifact.

FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY afrl afrl
COPY training training
COPY export export
COPY service service
COPY loadtest loadtest
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir ".[train,export]"
ENV AFRL_HOME=/build
RUN python -c "from afrl.default_model import ensure_default_model; ensure_default_model(print)"

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY afrl afrl
COPY service service
COPY loadtest loadtest
COPY training/__init__.py training/__init__.py
COPY export/__init__.py export/__init__.py
RUN pip install --no-cache-dir ".[serve]" && useradd --create-home --uid 10001 afrl
COPY --from=builder --chown=afrl /build/models/default /models/default
USER afrl
ENV AFRL_MODEL=/models/default AFRL_HOST=0.0.0.0 AFRL_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready').status != 200)"
CMD ["afrl", "serve"]
