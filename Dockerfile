# Dockhand's container image: the Slack front end (HTTP, or Socket Mode with
# SLACK_APP_TOKEN), next to the Docker Engine socket it manages.
#
#   docker build -t dockhand .                              # base from Docker Hub, wheels from PyPI
#   scripts/image build --docker-gid "$(stat -c %g /var/run/docker.sock)"
#                                                           # wheels made outside, build with no network
#   scripts/image build --debian-base                       # also no base image from a registry
#
# Build arguments: BASE, an image with python3 (3.11 or newer) and its venv
# module; DOCKER_GID, the GID of the group that owns the engine's socket on the
# host (`stat -c %g /var/run/docker.sock`), so the non-root user can use it.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# scripts/image removes this stage's image after the build (the legacy builder keeps it).
LABEL org.dockhand.stage=build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY . /src
# With wheels in the context (scripts/image) the install needs no network;
# without them pip builds Dockhand from the source and fetches its dependencies.
RUN set -eu; \
    python3 -m venv /opt/dockhand; \
    if ls /src/wheels/dockhand-*.whl >/dev/null 2>&1; then \
        /opt/dockhand/bin/pip install --no-index --find-links /src/wheels /src/wheels/dockhand-*.whl; \
    else \
        /opt/dockhand/bin/pip install /src; \
    fi; \
    /opt/dockhand/bin/pip uninstall --yes pip setuptools >/dev/null; \
    /opt/dockhand/bin/dockhand --version

FROM ${BASE}
ARG DOCKER_GID=999
# A user of its own (uid 10001) in a group with the socket's GID. It owns its home
# and the state directory, nothing else (compose also makes the root read-only).
RUN set -eu; \
    group="$(getent group "$DOCKER_GID" | cut -d: -f1)"; \
    if [ -z "$group" ]; then \
        group=docker; getent group docker >/dev/null && group=docker-host; \
        groupadd --gid "$DOCKER_GID" "$group"; \
    fi; \
    groupadd --gid 10001 dockhand; \
    useradd --uid 10001 --gid 10001 --groups "$group" --home-dir /home/dockhand --create-home \
            --shell /usr/sbin/nologin dockhand; \
    install -d -o 10001 -g 10001 -m 0700 /var/lib/dockhand
COPY --from=build /opt/dockhand /opt/dockhand
ENV PATH=/opt/dockhand/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOCKER_HOST=unix:///var/run/docker.sock \
    DOCKHAND_STATE_DIR=/var/lib/dockhand
# The pending confirmations (state.db) and the hash-chained audit log (audit.jsonl).
VOLUME /var/lib/dockhand
WORKDIR /home/dockhand
USER 10001
# Slack's HTTP mode (POST /slack/events); Socket Mode needs no port.
EXPOSE 3000
# Healthy when Dockhand, with the container's settings, gets an answer from
# the engine through the mounted socket (`docker version`).
HEALTHCHECK --interval=30s --timeout=15s --start-period=20s --retries=3 \
    CMD ["dockhand", "shell", "-c", "version"]
LABEL org.opencontainers.image.title="Dockhand" \
      org.opencontainers.image.description="ChatOps for Docker images: the Docker CLI's image commands from Slack"
ENTRYPOINT ["dockhand"]
CMD ["slack"]
