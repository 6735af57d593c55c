"""``feedwatch healthcheck``: ask a running exporter's ``/-/healthy`` the way its web config requires.

The container image's HEALTHCHECK runs it. A plain HTTP probe breaks as soon as
``--web.config.file`` turns on basic auth (every request, ``/-/healthy`` included, gets 401, as
with Prometheus' own endpoints) or TLS. This command reads the same web config as the server, so
it speaks HTTPS when TLS is on, and sends credentials when basic auth is on. The web config holds
only bcrypt hashes, so the password comes from a file (a secret mount), never from the command line::

    FEEDWATCH_WEB_CONFIG_FILE=/etc/feedwatch/web.yml \\
    FEEDWATCH_HEALTHCHECK_USER=healthcheck FEEDWATCH_HEALTHCHECK_PASSWORD_FILE=/run/secrets/healthcheck \\
        feedwatch healthcheck

Prints one line (Docker keeps it in ``docker inspect``'s health log) and exits 0 when the exporter
answered 200, 1 otherwise: unreachable, an error status, or basic auth on with no credentials
given (said before any request is made). Settings (flag, else environment variable):

    --url                 FEEDWATCH_HEALTHCHECK_URL            default http://127.0.0.1:10119/-/healthy
    --web.config.file     FEEDWATCH_WEB_CONFIG_FILE            the server's web config (TLS, basic auth)
    --user                FEEDWATCH_HEALTHCHECK_USER           a user of basic_auth_users
    --password-file       FEEDWATCH_HEALTHCHECK_PASSWORD_FILE  file holding that user's password
    --tls.cert-file       FEEDWATCH_HEALTHCHECK_CERT_FILE      client certificate, when the server requires one
    --tls.key-file        FEEDWATCH_HEALTHCHECK_KEY_FILE       its key

With TLS on, the server's certificate is not verified: the probe talks to its own process on
loopback, and a certificate issued for the service's name would not match 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import os
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from exporter.commands import common_flags
from exporter.config import ConfigError, parse_duration

DEFAULT_URL = "http://127.0.0.1:10119/-/healthy"


def register(subparsers: argparse._SubParsersAction) -> None:
    env = os.environ.get
    parser = subparsers.add_parser(
        "healthcheck", parents=[common_flags()],
        help="probe a running exporter's /-/healthy, with the TLS and basic auth its web config requires",
        description="Exit 0 when the exporter answers /-/healthy with 200, 1 otherwise. Reads the "
                    "server's --web.config.file to use HTTPS and basic auth when they are on; the "
                    "password comes from a file. The container image's HEALTHCHECK runs this.")
    parser.add_argument("--url", default=env("FEEDWATCH_HEALTHCHECK_URL", DEFAULT_URL),
                        help="what to ask (default: $FEEDWATCH_HEALTHCHECK_URL or %(default)s)")
    parser.add_argument("--web.config.file", dest="web_config_file", default=env("FEEDWATCH_WEB_CONFIG_FILE"),
                        help="the exporter's web config (default: $FEEDWATCH_WEB_CONFIG_FILE)")
    parser.add_argument("--user", default=env("FEEDWATCH_HEALTHCHECK_USER"),
                        help="basic auth user (default: $FEEDWATCH_HEALTHCHECK_USER)")
    parser.add_argument("--password-file", default=env("FEEDWATCH_HEALTHCHECK_PASSWORD_FILE"),
                        help="file holding the user's password (default: $FEEDWATCH_HEALTHCHECK_PASSWORD_FILE)")
    parser.add_argument("--tls.cert-file", dest="cert_file", default=env("FEEDWATCH_HEALTHCHECK_CERT_FILE"),
                        help="client certificate (default: $FEEDWATCH_HEALTHCHECK_CERT_FILE)")
    parser.add_argument("--tls.key-file", dest="key_file", default=env("FEEDWATCH_HEALTHCHECK_KEY_FILE"),
                        help="client certificate key (default: $FEEDWATCH_HEALTHCHECK_KEY_FILE)")
    parser.add_argument("--timeout", type=parse_duration, default=3.0, help="e.g. 3s (default: 3s)")
    parser.set_defaults(func=main)


class Unhealthy(Exception):
    """Why the probe failed, in one line."""


def build_request(args: argparse.Namespace) -> tuple[urllib.request.Request, ssl.SSLContext | None]:
    """The request to send and the TLS context to send it with, from the flags and the web config."""
    url = args.url
    tls_on, auth_on = False, False
    if args.web_config_file:
        from exporter.web import webconfig  # only when there is one: keeps the plain probe light

        try:
            config = webconfig.load(args.web_config_file)
        except ConfigError as exc:
            raise Unhealthy("; ".join(exc.errors)) from exc
        tls_on = config.tls_server_config is not None
        auth_on = bool(config.basic_auth_users)
    parts = urlsplit(url)
    if tls_on and parts.scheme == "http":
        url = urlunsplit(parts._replace(scheme="https"))  # the server speaks only TLS
    request = urllib.request.Request(url, headers={"User-Agent": "feedwatch-healthcheck"})
    if auth_on and not (args.user and args.password_file):
        raise Unhealthy(f"{args.web_config_file} turns basic auth on: give the healthcheck a user and its "
                        "password (FEEDWATCH_HEALTHCHECK_USER, FEEDWATCH_HEALTHCHECK_PASSWORD_FILE)")
    if args.user and args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as fh:
                password = fh.read().rstrip("\r\n")
        except OSError as exc:
            raise Unhealthy(f"cannot read the password file {args.password_file}: {exc.strerror}") from exc
        token = base64.b64encode(f"{args.user}:{password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    context = None
    if urlsplit(url).scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if args.cert_file:
            context.load_cert_chain(args.cert_file, args.key_file)
    return request, context


def probe(args: argparse.Namespace) -> str:
    """'<url>: 200 OK', or raises Unhealthy."""
    request, context = build_request(args)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=context) as resp:
            return f"{request.full_url}: {resp.status} {resp.reason}"
    except urllib.error.HTTPError as exc:
        hint = ""
        if exc.code == 401:
            hint = (" (basic auth is on: set FEEDWATCH_WEB_CONFIG_FILE, or FEEDWATCH_HEALTHCHECK_USER and "
                    "FEEDWATCH_HEALTHCHECK_PASSWORD_FILE)" if "Authorization" not in request.headers
                    else " (the user or password is wrong)")
        raise Unhealthy(f"{request.full_url}: {exc.code} {exc.reason}{hint}") from exc
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unhealthy(f"{request.full_url}: {reason}") from exc


def main(args: argparse.Namespace) -> int:
    try:
        print(f"healthy: {probe(args)}")
    except Unhealthy as exc:
        print(f"unhealthy: {exc}")
        return 1
    return 0
