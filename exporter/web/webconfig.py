"""``--web.config.file``: the Prometheus exporter-toolkit web configuration, read and checked.

The same file an operator already writes for node_exporter works here::

    tls_server_config:
      cert_file: tls.crt                  # relative paths: from this file's directory
      key_file: tls.key                   # (or inline PEM: cert, key)
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt      # (or inline PEM: client_ca)
      client_allowed_sans: [prometheus.monitoring.svc]
      min_version: TLS12
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]   # Go's names; TLS 1.2 and below
      curve_preferences: [X25519]
      prefer_server_cipher_suites: true
    http_server_config:
      http2: true                         # accepted; feedwatch serves HTTP/1.1 only (see below)
      headers:
        X-Frame-Options: deny
    rate_limit: {burst: 10, interval: 1s}
    basic_auth_users:
      prometheus: $2y$10$...              # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

This module is the format: ``load`` reads a file into a frozen ``WebConfig``, checking what
exporter-toolkit checks and a little more, every problem named with its key path (unknown keys
included: strict, like the main configuration); ``server_context`` turns its TLS section into an
``ssl.SSLContext``. ``webaccess.py`` re-reads the file while serving (certificates rotate without a
restart) and enforces it.

Where Python's TLS differs from Go's, and what feedwatch does about it:

- ``cipher_suites`` names Go's suites (``tls.CipherSuites()``; Go's insecure ones are refused, as
  exporter-toolkit does); each maps to its OpenSSL name. TLS 1.3 suites are accepted and ignored:
  they are not configurable in Go either. A list holding only TLS 1.3 suites needs ``min_version:
  TLS13`` (Go would serve TLS 1.2 with no suite at all: every such handshake would fail).
- ``curve_preferences``: Python's ``ssl`` module can restrict the key exchange to one group only
  (``SSLContext.set_ecdh_curve``), so a list of more than one curve is refused with that reason.
- ``client_auth_type``: Python's TLS verifies every client certificate it accepts, so
  ``RequireAnyClientCert`` (a certificate required but never verified) cannot be served and is
  refused; ``RequestClientCert`` (asked for, never verified, nobody refused) lets every client in
  without asking for a certificate, which grants exactly the same access.
- ``min_version: TLS10`` or ``TLS11``: OpenSSL 3 allows those versions only at its security level
  0, which the context then uses (it also admits weak keys: prefer TLS12).
- ``http_server_config.http2``: aiohttp serves HTTP/1.1 only. The key is accepted with either
  value (exporter-toolkit's default is true, so files written for Go exporters often say so) and
  the TLS handshake offers only ``http/1.1`` by ALPN: an HTTP/2 client (Prometheus included)
  falls back to HTTP/1.1, which is all a scrape needs. Rejecting ``true`` would break those
  shared files for no gain.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Literal

import yaml

from exporter.config import ConfigError, Duration, build_dataclass

ClientAuth = Literal["NoClientCert", "RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

# Go's tls.CipherSuites() for TLS 1.0-1.2 -> the OpenSSL name of the same suite.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# Go's TLS 1.3 suites: valid names, not configurable (in Go either).
TLS13_CIPHER_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
# Go's tls.InsecureCipherSuites(): exporter-toolkit does not accept them.
INSECURE_CIPHER_SUITES = frozenset({
    "TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
})
# Go's curve names -> OpenSSL's.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

# The response headers exporter-toolkit lets a file set, with the values allowed (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = None                 # inline PEM instead of cert_file
    key: str | None = None                  # inline PEM instead of key_file
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: str | None = None
    client_ca: str | None = None            # inline PEM instead of client_ca_file
    client_allowed_sans: tuple[str, ...] = ()
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        """The files this section reads (their changes rotate the certificates)."""
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True)
class HTTPServerConfig:
    http2: bool = True   # accepted for compatibility; HTTP/1.1 is served either way (module docstring)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimit:
    burst: int = 0
    interval: Duration = 0.0    # 0: no limit

    @property
    def enabled(self) -> bool:
        return self.interval > 0


@dataclass(frozen=True)
class WebConfig:
    tls_server_config: TLSServerConfig | None = None    # None: plain HTTP
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    rate_limit: RateLimit = RateLimit()
    basic_auth_users: dict[str, str] = field(default_factory=dict)


def load(path: str) -> WebConfig:
    """Read and check a web config file; raises ConfigError listing every problem, each
    prefixed with the file's path. The certificates are loaded too, so a key that does not
    match its certificate is reported here rather than at the first handshake."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from exc
    errors: list[str] = []
    config = parse(data if data is not None else {}, os.path.dirname(os.path.abspath(path)), errors)
    if errors or config is None:
        raise ConfigError([f"{path}: {e}" for e in errors])
    return config


def parse(data: object, base_dir: str, errors: list[str]) -> WebConfig | None:
    """Build and check a ``WebConfig`` from parsed YAML; relative paths are taken from ``base_dir``."""
    if isinstance(data, dict) and isinstance(data.get("tls_server_config"), dict) and not data["tls_server_config"]:
        data = {**data, "tls_server_config": None}   # `tls_server_config: {}`: plain HTTP, as in Go
    config = build_dataclass(WebConfig, data, "", errors, os.environ)
    if config is None:
        return None
    for user, hashed in config.basic_auth_users.items():
        if ":" in user:
            errors.append(f"basic_auth_users.{user}: a user name cannot contain ':' (basic auth splits on it)")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            errors.append(f"basic_auth_users.{user}: expected a bcrypt hash ($2y$10$ and 53 characters), "
                          f"not a plain password")
    for name, value in config.http_server_config.headers.items():
        if name not in HEADERS:
            errors.append(f"http_server_config.headers.{name}: this header cannot be configured "
                          f"(allowed: {', '.join(HEADERS)})")
        elif HEADERS[name] is not None and value not in HEADERS[name]:
            errors.append(f"http_server_config.headers.{name}: expected one of {', '.join(HEADERS[name])}, got {value!r}")
    limit = config.rate_limit
    if limit.burst < 0 or limit.interval < 0:
        errors.append("rate_limit: burst and interval cannot be negative")
    elif limit.enabled and limit.burst < 1:
        errors.append("rate_limit.burst: must be at least 1 with an interval (0 would refuse every request)")
    tls = config.tls_server_config
    if tls is not None:
        tls = dataclasses.replace(tls, **{key: os.path.join(base_dir, value)
                                          for key in ("cert_file", "key_file", "client_ca_file")
                                          if (value := getattr(tls, key))})
        config = dataclasses.replace(config, tls_server_config=tls)
        before = len(errors)
        _check_tls(tls, errors)
        if len(errors) == before:
            try:
                server_context(tls)
            except ConfigError as exc:
                errors.extend(exc.errors)
    return config


def _check_tls(tls: TLSServerConfig, errors: list[str]) -> None:
    p = "tls_server_config"
    for file_key, inline_key in (("cert_file", "cert"), ("key_file", "key")):
        given = [k for k in (file_key, inline_key) if getattr(tls, k)]
        if not given:
            errors.append(f"{p}.{file_key}: required to serve TLS (or {inline_key}: inline PEM); "
                          f"leave tls_server_config out for plain HTTP")
        elif len(given) == 2:
            errors.append(f"{p}.{inline_key}: set {file_key} or {inline_key}, not both")
    if tls.client_ca_file and tls.client_ca:
        errors.append(f"{p}.client_ca: set client_ca_file or client_ca, not both")
    for key in ("cert_file", "key_file", "client_ca_file"):
        value = getattr(tls, key)
        if value and not os.path.isfile(value):
            errors.append(f"{p}.{key}: no such file {value!r}")
    has_ca = bool(tls.client_ca_file or tls.client_ca)
    auth = tls.client_auth_type
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        errors.append(f"{p}.client_auth_type: {auth} (a certificate required but never verified) cannot be "
                      f"served: Python's TLS verifies every client certificate it accepts; use "
                      f"RequireAndVerifyClientCert with client_ca_file")
    elif auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
        errors.append(f"{p}.client_ca_file: required with client_auth_type {auth} (or client_ca: inline PEM)")
    elif auth == "NoClientCert" and has_ca:
        errors.append(f"{p}.client_auth_type: client CAs are configured without a client auth policy "
                      f"(set RequireAndVerifyClientCert, or remove client_ca_file)")
    if tls.client_allowed_sans and auth != "RequireAndVerifyClientCert":
        errors.append(f"{p}.client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert "
                      f"(with {auth} a client may present no certificate to match)")
    for i, san in enumerate(tls.client_allowed_sans):
        if not san:
            errors.append(f"{p}.client_allowed_sans[{i}]: empty")
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        errors.append(f"{p}.min_version: {tls.min_version} is above max_version {tls.max_version}")
    for i, name in enumerate(tls.cipher_suites):
        if name in INSECURE_CIPHER_SUITES:
            errors.append(f"{p}.cipher_suites[{i}]: {name} is insecure (Go's tls.InsecureCipherSuites); "
                          f"not accepted, as in exporter-toolkit")
        elif name not in CIPHER_SUITES and name not in TLS13_CIPHER_SUITES:
            errors.append(f"{p}.cipher_suites[{i}]: unknown cipher suite {name!r} "
                          f"(Go's names: {', '.join(sorted(CIPHER_SUITES))}, or a TLS 1.3 suite)")
    if tls.cipher_suites and all(n in TLS13_CIPHER_SUITES for n in tls.cipher_suites) and tls.min_version != "TLS13":
        errors.append(f"{p}.cipher_suites: lists only TLS 1.3 suites, which are not configurable; with "
                      f"min_version {tls.min_version} no TLS 1.2 suite would remain (set min_version: TLS13, "
                      f"or list TLS 1.2 suites)")
    for i, name in enumerate(tls.curve_preferences):
        if name not in CURVES:
            errors.append(f"{p}.curve_preferences[{i}]: unknown curve {name!r} (known: {', '.join(CURVES)})")
    if len(tls.curve_preferences) > 1:
        errors.append(f"{p}.curve_preferences: list one curve: Python's ssl module can restrict the key "
                      f"exchange to a single curve only, not to an ordered list")


def server_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server ``SSLContext`` for a checked TLS section; ConfigError naming the key on failure."""
    p = "tls_server_config"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    ciphers = [CIPHER_SUITES[n] for n in tls.cipher_suites if n in CIPHER_SUITES]
    # OpenSSL 3 allows TLS 1.0 and 1.1 only at security level 0 (module docstring).
    seclevel = ":@SECLEVEL=0" if tls.min_version in ("TLS10", "TLS11") else ""
    try:
        if ciphers:
            for name in ciphers:   # each must exist in this OpenSSL (a FIPS build lacks ChaCha20)
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(name)
            context.set_ciphers(":".join(ciphers) + seclevel)
        elif seclevel:
            context.set_ciphers("DEFAULT" + seclevel)
    except ssl.SSLError as exc:
        raise ConfigError([f"{p}.cipher_suites: not available in this OpenSSL ({ssl.OPENSSL_VERSION}): {exc}"]) from exc
    if tls.curve_preferences:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])   # HTTP/2 is not served (module docstring)
    _load_key_pair(context, tls)
    if tls.client_ca_file or tls.client_ca:
        try:
            if tls.client_ca_file:
                context.load_verify_locations(cafile=tls.client_ca_file)
            else:
                context.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            key = "client_ca_file" if tls.client_ca_file else "client_ca"
            raise ConfigError([f"{p}.{key}: cannot load the CA certificates: {exc}"]) from exc
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_NONE,          # the same access as Go's: nobody refused
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


def _load_key_pair(context: ssl.SSLContext, tls: TLSServerConfig) -> None:
    """Load the certificate and key, from files or inline PEM (``load_cert_chain`` wants files:
    inline ones go through a private temporary file, removed at once)."""
    p = "tls_server_config"
    keys = f"{p}.{'cert_file' if tls.cert_file else 'cert'}/{'key_file' if tls.key_file else 'key'}"
    temporary: list[str] = []
    try:
        cert_path = tls.cert_file or _private_file(tls.cert or "", temporary)
        key_path = tls.key_file or _private_file(tls.key or "", temporary)
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError([f"{keys}: cannot load the certificate and key: {reason}"]) from exc
    finally:
        for path in temporary:
            os.unlink(path)


def _private_file(text: str, created: list[str]) -> str:
    fd, path = tempfile.mkstemp(prefix="feedwatch-tls-", suffix=".pem")   # mode 0600
    created.append(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
