# Stand-in for the Dockerfile's python:3.11-slim-bookworm base (registries are unreachable here):
# Debian bookworm's python3 (3.11), as `python`, with venv and, as the real base has, the Python
# headers (libpython3.11-dev: the Dockerfile compiles exporter/_fill.c). The host's CA store is
# copied in so pip reaches the package index through an intercepting proxy, when there is one.
FROM {base}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 libpython3.11-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
