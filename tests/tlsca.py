"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line tool
(installed by scripts/ensure-tools.sh): a CA, server certificates for 127.0.0.1 and client
certificates with chosen subject alternative names."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate (compare with ``ssl_object.getpeercert(True)``)."""
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(self.cert.read_text())).hexdigest()


class CA:
    """``CA(directory, "test-ca")``; ``issue("server", ["IP:127.0.0.1"])`` -> the files of a leaf."""

    def __init__(self, directory: Path, name: str = "feedwatch-test-ca") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.cert = directory / f"{name}.crt"
        self.key = directory / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", self.key.name, "-out", self.cert.name, cwd=directory)

    def issue(self, name: str, sans: list[str], *, usage: str = "serverAuth,clientAuth",
              key: str = "rsa:2048") -> Issued:
        """A certificate signed by this CA; ``sans`` like ``["IP:127.0.0.1", "DNS:scraper.example"]``."""
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        keyopts = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if key == "ec" else ["-newkey", key]
        _openssl("req", "-new", *keyopts, "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.cert.name, "-CAkey", self.key.name,
                 "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=self.dir)
        return Issued(self.dir / f"{name}.crt", self.dir / f"{name}.key")
