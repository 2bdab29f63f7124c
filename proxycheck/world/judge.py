"""A world's judge: a fresh CA, the judge's certificate, and the in-process ``Judge`` on one address.

The demo and the test world start their judge here; the benches run the same judge as a
``proxycheck judge`` child process (its CPU must not count as the client's) with the same
certificates (``write_certificates``).

Rules:
1. The CA is made at run time (``certs.make_certificates``) and written to ``ca.pem`` in the
   world's directory; the checker trusts that file only. The key file is 0600 from creation.
2. A judge that cannot listen is a ``WorldError`` naming the address, never a bare OSError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..judge import Judge, JudgeOptions
from .certs import make_certificates
from .procs import WorldError


@dataclass(frozen=True)
class JudgeFiles:
    ca_file: Path  # trust this
    server_file: Path  # private key + certificate chain: the judge's --cert and --key


def write_certificates(workdir: Path, host: str) -> JudgeFiles:
    """A fresh CA and a certificate for ``host``, written into ``workdir`` (rule 1)."""
    certs = make_certificates(host)
    ca_file, server_file = workdir / "ca.pem", workdir / "judge.pem"
    ca_file.write_text(certs.ca_pem)
    server_file.touch(mode=0o600)
    server_file.write_text(certs.server_pem)
    return JudgeFiles(ca_file, server_file)


def start_judge(workdir: Path, host: str, *, ban_ips: frozenset[str] = frozenset(),
                target_bans: tuple[tuple[str, frozenset[str]], ...] = ()) -> tuple[Judge, Path]:
    """The started judge (HTTP and HTTPS on ``host``, ports picked by the kernel) and its CA file.

    ``ban_ips`` get Google's /sorry/ on every ban target; ``target_bans`` bans addresses on one
    preset's target only. The caller stops the judge (``judge.stop()``)."""
    files = write_certificates(workdir, host)
    judge = Judge(JudgeOptions(
        listen=(host, 0), tls_listen=(host, 0), cert_file=str(files.server_file), key_file=str(files.server_file),
        ban_ips=ban_ips, ban_mode="sorry", target_bans=target_bans,
    ))
    try:
        judge.start()
    except OSError as exc:
        raise WorldError(f"cannot start the judge on {host}: {exc.strerror or exc} (a loopback world needs the "
                         "whole 127.0.0.0/8 loopback range, as Linux has it)") from None
    return judge, files.ca_file
