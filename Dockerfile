# PolyaRun images, one Dockerfile, two targets:
#   docker build --target trainer  -t ghcr.io/polyarun/trainer:0.1.0 .   (CUDA, torch, vLLM, TRL;
#                                                                         requirements/trainer-gpu.txt)
#   docker build --target operator -t ghcr.io/polyarun/operator:0.1.0 .  (slim, no torch)
# Dependencies are installed from pinned lists in a layer of their own, before the
# source is copied, so editing code does not reinstall gigabytes of wheels.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu22.04

# --------------------------------------------------------------------------- wheel
# Build the project's wheel once; both targets install it with --no-deps.
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README* ./
COPY trainer/ trainer/
COPY operator/ operator/
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir "setuptools==80.9.0" "wheel==0.45.1" \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels .

# --------------------------------------------------------------------------- operator
FROM ${PYTHON_IMAGE} AS operator
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /opt/polyarun
# Base dependencies only (the operator never imports torch), read from pyproject's pins.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY --from=wheel /wheels/ /wheels/
RUN pip install --no-cache-dir --no-deps /wheels/*.whl \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin polya
USER 1000:1000
EXPOSE 8080 9443
ENTRYPOINT ["polya", "operator"]

# --------------------------------------------------------------------------- trainer
FROM ${CUDA_IMAGE} AS trainer
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/workspace/.cache/huggingface
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
      build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv
WORKDIR /opt/polyarun
# Every package of the image pinned: requirements/trainer-gpu.txt, compiled with pip's resolver
# for this target (tools/gpu_lock.py; a test resolves it again). It holds vllm 0.31.0, the
# transformers it accepts (5.17.0) and torch 2.13.0, whose Linux wheel on the default index is
# the CUDA 13 build (its CUDA libraries come as wheels; the node needs a CUDA 13 driver).
COPY requirements/trainer-gpu.txt requirements.txt
RUN pip install --no-cache-dir --only-binary=:all: -r requirements.txt
COPY --from=wheel /wheels/ /wheels/
RUN pip install --no-cache-dir --no-deps /wheels/*.whl \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin polya \
 && mkdir -p /workspace \
 && chown 1000:1000 /workspace
USER 1000:1000
WORKDIR /workspace
EXPOSE 9400
ENTRYPOINT ["python", "-m", "polya_trainer"]
