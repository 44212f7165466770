# PolyaRun images, one Dockerfile, two targets:
#   docker build --target trainer  -t ghcr.io/polyarun/trainer:0.1.0 .   (CUDA, torch, vLLM, TRL)
#   docker build --target operator -t ghcr.io/polyarun/operator:0.1.0 .  (slim, no torch)
# Dependencies are installed from pyproject.toml's pins in a layer of their own, before the
# source is copied, so editing code does not reinstall gigabytes of wheels.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04

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
COPY pyproject.toml ./
# torch first and exactly pinned (the Linux wheel from the default index is the CUDA build),
# then every pin of the base, train and vllm extras.
RUN pip install --no-cache-dir "torch==2.13.0" \
 && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['train'] + p['optional-dependencies']['vllm']))" > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt
COPY --from=wheel /wheels/ /wheels/
RUN pip install --no-cache-dir --no-deps /wheels/*.whl \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin polya \
 && mkdir -p /workspace \
 && chown 1000:1000 /workspace
USER 1000:1000
WORKDIR /workspace
EXPOSE 9400
ENTRYPOINT ["python", "-m", "polya_trainer"]
