"""The web config file format (exporter-toolkit's): every key, strictness, every problem named.

Serving it (TLS, rotation, client certificates, headers, auth) is tested against real clients in
tests/integration/test_web_config.py.
"""

from __future__ import annotations

import ssl
import textwrap

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.web import webconfig
from exporter.web.webaccess import allowed_san, client_sans, restart_only
from tests.tlsca import CA

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root)
    return ca, ca.issue("server", ["IP:127.0.0.1"])


def problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "web.yml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as exc:
        webconfig.load(str(path))
    prefix = f"{path}: "
    assert all(e.startswith(prefix) for e in exc.value.errors)
    return [e[len(prefix):] for e in exc.value.errors]


def load(tmp_path, text: str) -> webconfig.WebConfig:
    path = tmp_path / "web.yml"
    path.write_text(textwrap.dedent(text))
    return webconfig.load(str(path))


def test_every_key_of_the_format_loads(tmp_path, pki) -> None:
    ca, server = pki
    config = load(tmp_path, f"""
        tls_server_config:
          cert_file: {server.cert}
          key_file: {server.key}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {ca.cert}
          client_allowed_sans: [scraper.example, 10.0.0.1]
          min_version: TLS12
          max_version: TLS13
          cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
          curve_preferences: [X25519]
          prefer_server_cipher_suites: false
        http_server_config:
          http2: false
          headers:
            X-Frame-Options: sameorigin
        rate_limit: {{burst: 5, interval: 2s}}
        basic_auth_users:
          prometheus: '{HASH}'
        """)
    tls = config.tls_server_config
    assert tls.client_allowed_sans == ("scraper.example", "10.0.0.1")
    assert tls.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256")
    assert (config.rate_limit.burst, config.rate_limit.interval) == (5, 2.0)
    assert config.http_server_config.http2 is False
    context = webconfig.server_context(tls)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-RSA-AES128-GCM-SHA256"}


def test_unknown_keys_are_named_with_their_path(tmp_path) -> None:
    found = problems(tmp_path, """
        tls_server_config:
          cert_fil: x
        http_server_config:
          header: {}
        basic_auth_user: {}
        rate_limit: {bursts: 1}
        """)
    assert any(p.startswith("tls_server_config.cert_fil: unknown key (did you mean 'cert_file'?)") for p in found)
    assert any(p.startswith("http_server_config.header: unknown key (did you mean 'headers'?)") for p in found)
    assert any(p.startswith("basic_auth_user: unknown key (did you mean 'basic_auth_users'?)") for p in found)
    assert any(p.startswith("rate_limit.bursts: unknown key") for p in found)


def test_invalid_values_are_named(tmp_path, pki) -> None:
    ca, server = pki
    found = problems(tmp_path, f"""
        tls_server_config:
          cert_file: {server.cert}
          key_file: {server.key}
          client_auth_type: RequireAnyClientCert
          client_allowed_sans: [x]
          min_version: TLS13
          max_version: TLS12
          cipher_suites: [TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, ECDHE-RSA-AES128-GCM-SHA256]
          curve_preferences: [CurveP256, P-384]
        http_server_config:
          headers:
            X-Frame-Options: allow
            Server: feedwatch
        rate_limit: {{burst: 0, interval: 1s}}
        basic_auth_users:
          prometheus: hunter2
          'a:b': '{HASH}'
        """)
    expected = [
        "tls_server_config.client_auth_type: RequireAnyClientCert (a certificate required but never verified) "
        "cannot be served",
        "tls_server_config.client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert",
        "tls_server_config.min_version: TLS13 is above max_version TLS12",
        "tls_server_config.cipher_suites[0]: TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA is insecure",
        "tls_server_config.cipher_suites[1]: unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA256' (Go's names:",
        "tls_server_config.curve_preferences[1]: unknown curve 'P-384'",
        "tls_server_config.curve_preferences: list one curve",
        "http_server_config.headers.X-Frame-Options: expected one of deny, sameorigin, got 'allow'",
        "http_server_config.headers.Server: this header cannot be configured",
        "rate_limit.burst: must be at least 1 with an interval",
        "basic_auth_users.prometheus: expected a bcrypt hash",
        "basic_auth_users.a:b: a user name cannot contain ':'",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in found), (start, found)
    assert len(found) == len(expected), found


def test_client_ca_and_auth_type_must_agree(tmp_path, pki) -> None:
    ca, server = pki
    tls = f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
    assert problems(tmp_path, tls + "  client_auth_type: RequireAndVerifyClientCert\n") == [
        "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert "
        "(or client_ca: inline PEM)"]
    assert problems(tmp_path, tls + f"  client_ca_file: {ca.cert}\n")[0].startswith(
        "tls_server_config.client_auth_type: client CAs are configured without a client auth policy")
    # RequestClientCert asks nobody for a certificate: the same access as Go's (nobody refused).
    config = load(tmp_path, tls + "  client_auth_type: RequestClientCert\n")
    assert webconfig.server_context(config.tls_server_config).verify_mode == ssl.CERT_NONE


def test_certificate_problems_are_found_at_load(tmp_path, pki) -> None:
    ca, server = pki
    other = ca.issue("other", ["IP:127.0.0.1"])
    assert problems(tmp_path, f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {other.key}\n")[0] \
        .startswith("tls_server_config.cert_file/key_file: cannot load the certificate and key:")
    assert problems(tmp_path, "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n") == [
        f"tls_server_config.cert_file: no such file '{tmp_path / 'nope.crt'}'",
        f"tls_server_config.key_file: no such file '{tmp_path / 'nope.key'}'"]
    assert problems(tmp_path, "tls_server_config:\n  min_version: TLS13\n")[0].startswith(
        "tls_server_config.cert_file: required to serve TLS (or cert: inline PEM)")


def test_paths_are_relative_to_the_file_and_pem_may_be_inline(tmp_path, pki) -> None:
    ca, server = pki
    (tmp_path / "tls.crt").write_bytes(server.cert.read_bytes())
    (tmp_path / "tls.key").write_bytes(server.key.read_bytes())
    config = load(tmp_path, "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    assert config.tls_server_config.cert_file == str(tmp_path / "tls.crt")
    indent = lambda text: "\n".join("    " + line for line in text.splitlines())  # noqa: E731
    config = load(tmp_path, f"tls_server_config:\n  cert: |\n{indent(server.cert.read_text())}\n"
                            f"  key: |\n{indent(server.key.read_text())}\n"
                            f"  client_auth_type: VerifyClientCertIfGiven\n"
                            f"  client_ca: |\n{indent(ca.cert.read_text())}\n")
    assert webconfig.server_context(config.tls_server_config).verify_mode == ssl.CERT_OPTIONAL


def test_an_empty_tls_section_means_plain_http(tmp_path) -> None:
    assert load(tmp_path, "tls_server_config: {}\n").tls_server_config is None
    assert load(tmp_path, "tls_server_config:\n").tls_server_config is None
    assert load(tmp_path, "").basic_auth_users == {}


def test_tls13_only_suites_need_min_version_tls13(tmp_path, pki) -> None:
    ca, server = pki
    tls = f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n  cipher_suites: [TLS_AES_256_GCM_SHA384]\n"
    assert problems(tmp_path, tls)[0].startswith("tls_server_config.cipher_suites: lists only TLS 1.3 suites")
    assert load(tmp_path, tls + "  min_version: TLS13\n").tls_server_config.min_version == "TLS13"


def test_restart_only_changes(tmp_path, pki) -> None:
    ca, server = pki
    tls = f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
    base = load(tmp_path, tls)
    assert restart_only(base, load(tmp_path, tls + "  client_allowed_sans: []\n")) == []
    assert restart_only(base, load(tmp_path, "")) == ["tls_server_config: turning TLS on or off takes a restart"]
    changed = restart_only(base, load(tmp_path, tls + "  max_version: TLS12\n  prefer_server_cipher_suites: false\n"))
    assert [c.split(":")[0] for c in changed] == ["tls_server_config.max_version",
                                                  "tls_server_config.prefer_server_cipher_suites"]


def test_client_sans_are_compared_as_go_writes_them() -> None:
    cert = {"subjectAltName": (("DNS", "scraper.example"), ("IP Address", "0:0:0:0:0:0:0:1\n"),
                               ("URI", "spiffe://m/p"), ("email", "ops@example.com"), ("DirName", "x"))}
    sans = client_sans(cert)
    assert sans == {"scraper.example", "::1", "spiffe://m/p", "ops@example.com"}
    assert allowed_san(sans, ("0:0::1",)) and allowed_san(sans, ("ops@example.com",))
    assert not allowed_san(sans, ("x",)) and not allowed_san(client_sans(None), ("scraper.example",))
