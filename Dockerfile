# feedwatch exporter image: `feedwatch run` by default; the same image runs `feedwatch simulate`
# in docker-compose.yml. Build: docker build -t feedwatch:local .
#
# The base is pinned to a full version tag (Python 3.11 patch release, Debian bookworm). For a
# reproducible production build, pin its digest as well: FROM python:3.11.13-slim-bookworm@sha256:...

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package needs (.dockerignore keeps everything else out of the context): the code
# and the folders pyproject.toml maps into exporter.resources (configs, rules, dashboards).
COPY pyproject.toml setup.py README.md LICENSE ./
COPY exporter ./exporter
COPY examples ./examples
COPY prometheus ./prometheus
COPY alertmanager ./alertmanager
COPY grafana/dashboards ./grafana/dashboards
COPY grafana/provisioning ./grafana/provisioning
# feedwatch_build_info's revision and branch (setup.py stamps them into the package; the context
# has no .git): docker build --build-arg REVISION=$(git rev-parse HEAD) --build-arg BRANCH=$(git rev-parse --abbrev-ref HEAD) .
ARG REVISION=unknown
ARG BRANCH=unknown
# A C compiler for the package's formatting extension (exporter/_fill.c; the base carries the
# Python headers). Only this stage has it: the runtime stage gets the compiled module.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# A virtualenv copied whole into the runtime stage: no compiler, no pip cache, no sources there.
RUN python -m venv /opt/feedwatch \
 && FEEDWATCH_BUILD_REVISION="$REVISION" FEEDWATCH_BUILD_BRANCH="$BRANCH" /opt/feedwatch/bin/pip install '.[picows]' \
 && /opt/feedwatch/bin/pip uninstall --yes pip

FROM python:3.11.13-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/feedwatch/bin:$PATH
COPY --from=build /opt/feedwatch /opt/feedwatch
# Never root: a fixed numeric UID so volume permissions and `USER` checks are predictable.
RUN groupadd --system --gid 10001 feedwatch \
 && useradd --system --uid 10001 --gid feedwatch --home-dir /var/lib/feedwatch --create-home \
      --shell /usr/sbin/nologin feedwatch
USER 10001:10001
WORKDIR /var/lib/feedwatch
EXPOSE 10119
# `feedwatch healthcheck` asks /-/healthy the way the web config requires: HTTPS when TLS is on,
# basic auth when users are configured (every endpoint then needs credentials, as in Prometheus).
# With --web.config.file, set FEEDWATCH_WEB_CONFIG_FILE to the same file and give the probe a user:
# FEEDWATCH_HEALTHCHECK_USER and FEEDWATCH_HEALTHCHECK_PASSWORD_FILE (a secret mount); see
# docs/deployment.md. Another listen port: FEEDWATCH_HEALTHCHECK_URL.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["feedwatch", "healthcheck"]
ENTRYPOINT ["feedwatch"]
CMD ["run", "-c", "/etc/feedwatch/feedwatch.yml"]
