# Stand-in for victoriametrics/victoria-metrics:v{version}: Debian's victoria-metrics of exactly
# that release, laid out like the upstream image (the binary at /victoria-metrics-prod as the
# entrypoint, busybox wget for health checks), plus a data directory owned by nobody, which the
# compose file runs it as (the upstream image runs as root and has no such directory).
FROM {base}
RUN apt-get update \
 && apt-get install -y --no-install-recommends "victoria-metrics={version}*" busybox \
 && ln -s /bin/busybox /usr/local/bin/wget \
 && ln -s /usr/bin/victoria-metrics /victoria-metrics-prod \
 && mkdir -p /victoria-metrics-data && chown 65534:65534 /victoria-metrics-data \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 8428
ENTRYPOINT ["/victoria-metrics-prod"]
