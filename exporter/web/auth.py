"""Request authentication for feedwatch's write APIs: a bearer token or an HMAC signature.

Shared by the trading push API (``POST /api/v1/events``, ``exporter/trading/api.py``) and the
watchlist admin API (``exporter/web/watchlist_api.py``); each hands its own credentials section
(anything with ``token``, ``hmac_secret``, ``max_skew`` and ``enabled``). A request carries either

- ``Authorization: Bearer <token>``, or
- ``X-Feedwatch-Timestamp: <Unix seconds>`` and ``X-Feedwatch-Signature: sha256=<hex HMAC-SHA256
  of the signed message>``. The push API signs ``"<timestamp>." + body``; the watchlist API signs
  ``"<timestamp>." + "<METHOD> <path>\\n" + body`` so a signature cannot be moved to another
  symbol. A timestamp further than ``max_skew`` from our clock, or a signature already used, is
  refused as a replay.

``precheck`` decides everything that can be decided from the headers, so a caller refuses a
request **before reading its body**; ``verify`` checks the signature over what was read.
``Verdict.credential`` names what signed an accepted request (``token`` or ``hmac``) for the
change logs and metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any

TIMESTAMP_HEADER = "X-Feedwatch-Timestamp"
SIGNATURE_HEADER = "X-Feedwatch-Signature"
# Unix seconds as a bot writes them: digits, optionally a fraction. Not "nan", "inf", "1e9".
_TIMESTAMP = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")
_SIGNATURE = re.compile(r"^sha256=[0-9a-fA-F]{64}$")


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Feedwatch-Signature`` value for ``body`` sent at ``timestamp`` (for bots and tests)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class Verdict:
    """What the headers say: refused (``reason`` and a message), or go on (``signature`` to verify
    over the body once it is read; None for a bearer token, which is already checked)."""

    reason: str | None = None
    message: str = ""
    signature: str | None = None
    stamp: str = ""
    credential: str = ""          # "token" or "hmac" once accepted


class Authenticator:
    """Checks one request's credentials; remembers recent signatures to refuse replays.

    ``api`` is read at every request, so a reload can swap it (``auth.api = new``);
    ``disabled`` is the message for a request while no credential is configured, naming the keys
    to set.
    """

    def __init__(self, api: Any, disabled: str = "this API is disabled: configure a token or an hmac_secret",
                 section: str = "api") -> None:
        self.api = api
        self.disabled = disabled
        self.section = section
        self.seen: dict[str, float] = {}  # signature -> when it may be forgotten (our clock)

    def precheck(self, headers: Any, now: float) -> Verdict:
        """Everything that can be decided from the headers, before reading the body."""
        api = self.api
        if not api.enabled:
            return Verdict("unauthorized", self.disabled)
        authorization = headers.get("Authorization", "")
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not api.token:
                return Verdict("unauthorized", "unsupported Authorization scheme (use Bearer, or sign the request)")
            if not hmac.compare_digest(credential.strip().encode(), api.token.encode()):
                return Verdict("unauthorized", "invalid bearer token")
            return Verdict(credential="token")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signature:
            return Verdict("unauthorized", f"missing credentials: send Authorization: Bearer or {SIGNATURE_HEADER}")
        if not api.hmac_secret:
            return Verdict("unauthorized", f"request signing is not configured ({self.section}.hmac_secret)")
        if not _SIGNATURE.match(signature):
            return Verdict("unauthorized", f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>")
        stamp = headers.get(TIMESTAMP_HEADER, "")
        sent = float(stamp) if _TIMESTAMP.match(stamp) else math.nan
        if not math.isfinite(sent):
            return Verdict("unauthorized", f"{TIMESTAMP_HEADER} must be Unix seconds (digits, optionally "
                                           f"a fraction), got {stamp[:40]!r}")
        # Checked before the signature, which needs the body: a stale request is not read at all.
        if abs(now - sent) > api.max_skew:
            return Verdict("replayed", f"{TIMESTAMP_HEADER} is {now - sent:+.0f}s from the server clock "
                                       f"(allowed: {api.max_skew:g}s); check the client's clock")
        self._forget(now)
        if signature.lower() in self.seen:
            return Verdict("replayed", "this signature was already used (a replayed request)")
        return Verdict(signature=signature.lower(), stamp=stamp, credential="hmac")

    def verify(self, verdict: Verdict, message: bytes, now: float) -> Verdict:
        """The signature against the signed message (the body, or what the API signs); remembers
        it when it matches."""
        if verdict.signature is None:
            return verdict
        if not hmac.compare_digest(verdict.signature.encode(), sign(self.api.hmac_secret, verdict.stamp, message).encode()):
            return Verdict("unauthorized", "invalid signature")
        if verdict.signature in self.seen:  # two copies of one request in flight at once
            return Verdict("replayed", "this signature was already used (a replayed request)")
        # Remembered until its timestamp leaves the skew window; after that the skew check refuses it.
        self.seen[verdict.signature] = float(verdict.stamp) + self.api.max_skew
        return verdict

    def _forget(self, now: float) -> None:
        if len(self.seen) > 1000:
            self.seen = {sig: until for sig, until in self.seen.items() if until >= now}
