"""Running the installed ``proxycheck`` command as a subprocess, the way users and scripts do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROXYCHECK = str(Path(sys.executable).with_name("proxycheck"))


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_")}
    full_env.update(env or {})
    return subprocess.run([PROXYCHECK, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


def run_json(*args: str, **kw) -> tuple[subprocess.CompletedProcess, object]:
    proc = run_cli(*args, **kw)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON ({exc}); exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    return proc, data
