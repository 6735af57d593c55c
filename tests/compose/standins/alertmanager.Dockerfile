# Stand-in for prom/alertmanager:v{version}: Debian's prometheus-alertmanager of exactly that
# release, laid out like the upstream image (entrypoint the binary, user nobody, data in
# /alertmanager, busybox wget, no time zone database: the compose file mounts zoneinfo).
FROM {base}
RUN apt-get update \
 && apt-get install -y --no-install-recommends "prometheus-alertmanager={version}*" busybox \
 && ln -s /bin/busybox /usr/local/bin/wget \
 && mkdir -p /alertmanager && chown 65534:65534 /alertmanager \
 && rm -rf /var/lib/apt/lists/* /usr/share/zoneinfo
USER 65534:65534
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
