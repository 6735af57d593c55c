# Stand-in for prom/prometheus:v{version}: Debian's prometheus package of exactly that release,
# laid out like the upstream image (entrypoint the binary, user nobody, data in /prometheus,
# busybox wget for health checks).
FROM {base}
RUN apt-get update \
 && apt-get install -y --no-install-recommends "prometheus={version}*" busybox \
 && ln -s /bin/busybox /usr/local/bin/wget \
 && mkdir -p /prometheus && chown 65534:65534 /prometheus \
 && rm -rf /var/lib/apt/lists/*
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
