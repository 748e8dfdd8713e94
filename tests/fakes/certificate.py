"""A self-signed certificate for 127.0.0.1, made by the ``openssl`` CLI when a test needs one:
what a TLS-terminating nginx in a test serves (browsers are told to accept it)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Certificate:
    """A certificate and its private key, PEM files."""

    path: Path
    key: Path


def self_signed(folder: Path) -> Certificate:
    """A new P-256 key and a one-day certificate for ``127.0.0.1`` (its subjectAltName, which
    browsers check rather than the common name), written into ``folder``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl CLI is not installed: `apt-get install openssl`")
    folder.mkdir(parents=True, exist_ok=True)
    certificate = Certificate(folder / "certificate.pem", folder / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(certificate.key), "-out", str(certificate.path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate
