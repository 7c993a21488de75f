# syntax=docker/dockerfile:1
# metalbus: one image for every component (watcher, ipam, announcer, and the operator commands).
#
#   docker build -t metalbus:0.1.0 .
#   docker run --rm metalbus:0.1.0 --help
#
# Reproducible: the base image is pinned by version (pin it by digest too where your registry allows:
# FROM python:3.11.7-slim-bookworm@sha256:...), and every runtime dependency is installed at the exact
# version in requirements.lock (refreshed with `make lock`).
#
# Non-root by default (uid 10001). The announcer needs raw sockets for ARP/NDP (CAP_NET_RAW) and BGP's
# port 179 for routers that dial in (CAP_NET_BIND_SERVICE), nothing more (TCP MD5 needs no capability):
# its DaemonSet adds exactly those two and runs the container as root, because Linux file capabilities on
# a Python interpreter would give them to every process of the image; see docs/install.md.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- build stage: a virtual environment with the pinned dependencies and metalbus itself ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/metalbus
WORKDIR /src
COPY requirements.lock ./
# Every dependency ships binary wheels for linux/amd64 and arm64 (no compiler is needed or installed) but
# nkeys, pure Python published only as source: it is built with the pinned setuptools, without fetching
# anything unpinned for the build.
RUN /opt/metalbus/bin/pip install "setuptools==80.9.0" \
 && /opt/metalbus/bin/pip install --only-binary=:all: --no-binary=nkeys --no-build-isolation \
      --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
# The Kubernetes client's asyncio twin (kubernetes/aio, a third of the image) is never imported: the watcher
# runs the synchronous client off the event loop (tests/unit/deploy/test_image.py checks nothing imports it).
RUN /opt/metalbus/bin/pip install --no-deps --no-build-isolation . \
 && /opt/metalbus/bin/pip uninstall --yes setuptools pip \
 && /opt/metalbus/bin/python -c "import kubernetes, pathlib, shutil; \
      shutil.rmtree(pathlib.Path(kubernetes.__file__).parent / 'aio')" \
 && /opt/metalbus/bin/python -c "import services.cli, schemas.metallb"

# --- final stage: the interpreter, the environment, no build tools -------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="metalbus" \
      org.opencontainers.image.description="LoadBalancer for Kubernetes without a cloud, over NATS JetStream" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/metalbus/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's own pip/setuptools/wheel are build tools too: not in the image that runs.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 metalbus \
 && useradd --system --uid 10001 --gid metalbus --home-dir /nonexistent --shell /usr/sbin/nologin metalbus
COPY --from=build /opt/metalbus /opt/metalbus
USER 10001:10001
# 7470 watcher, 7471 ipam, 7472 announcer, 7473 authenticator: /healthz, /readyz and /metrics.
EXPOSE 7470 7471 7472 7473
ENTRYPOINT ["metalbus"]
CMD ["--help"]
