#!/usr/bin/env bash
# Make sure the real binaries the tests talk to are installed: Prometheus (promtool), Alertmanager
# (amtool), Chromium (status page tests), docker-compose (validates docker-compose.yml), mount
# (tmpfs for the disk-full test), systemd-analyze (verifies deploy/systemd/feedwatch.service),
# VictoriaMetrics (the remote-storage test writes to it), the PostgreSQL server (the incident
# journal's PostgreSQL sink; tests run their own cluster with initdb/postgres from
# /usr/lib/postgresql/<version>/bin, never the system service) and clickhouse-server (the tick
# sink's ClickHouse backend; tests run their own server the same way).
# `make compose-test` installs its own (docker.io, debootstrap) when it runs.
# Installs the missing Debian packages when run as root; otherwise says what to install.
#
#   scripts/ensure-tools.sh        every tool the tests need (make test)
#   scripts/ensure-tools.sh demo   only what `feedwatch demo` adds to the pipeline: Prometheus and
#                                  Alertmanager, for alerts and notifications (make demo)
set -euo pipefail
profile=${1:-test}

declare -A PACKAGE_FOR=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [chromium]=chromium
  [docker-compose]=docker-compose
  [openssl]=openssl          # self-signed certificates for the --web.config.file TLS test
  [victoria-metrics]=victoria-metrics   # remote_write target of tests/integration/test_remote_storage.py
  [mount]=mount              # a small tmpfs under the trading state file: the disk-full test
  [umount]=mount
  [systemd-analyze]=systemd  # tests/unit/test_systemd.py
  # The tick sink's ClickHouse backend (18.16 in Debian); tests run their own server, never the service.
  [clickhouse-server]=clickhouse-server
)

binaries=("${!PACKAGE_FOR[@]}")
[ "$profile" = demo ] && binaries=(prometheus prometheus-alertmanager)

missing=()
for binary in "${binaries[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${PACKAGE_FOR[$binary]}")
done
# Debian keeps the PostgreSQL server binaries off PATH, one directory per major version.
if [ "$profile" = test ] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "missing $profile tools ($packages); not root, so not installing them." >&2
  echo "install them with: sudo apt-get install --no-install-recommends $packages" >&2
  exit 1
fi
echo "installing Debian packages: $packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $packages >/dev/null
