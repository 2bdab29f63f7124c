"""A configured HTTP token must be long and in a file others cannot read: ``config check`` and
``run`` refuse, naming the file and the key, never showing the token (config.py ``_token`` and
``_check_secret_file``; the token file has the same rule, http_token.py)."""

from __future__ import annotations

import pytest

from cli import run_cli

LONG = "t0ken-" + "x" * 40
SHORT = "t0ken-" + "x" * 25  # 31 characters


def write(tmp_path, token: str, mode: int):
    config = tmp_path / "proxycheck.toml"
    config.write_text(f'state_dir = "state"\n[http]\nenabled = true\ntoken = "{token}"\n')
    config.chmod(mode)
    return config


# (token, file mode, exit code, words in the error)
CASES = [
    (LONG, 0o600, 0, None),
    (LONG, 0o640, 0, None),  # root:proxycheck 640, as deploy/install.sh writes it
    (SHORT, 0o600, 2, "[http].token: must be at least 32 characters"),
    (LONG, 0o644, 2, "[http].token: the file holds the HTTP token and is readable by every user (mode -rw-r--r--)"),
    (LONG, 0o602, 2, "is readable by every user (mode -rw-----w-)"),
    ("", 0o644, 0, None),  # no token in it: nothing secret (one is generated in <state_dir>/http-token)
]


@pytest.mark.parametrize("command", ["config check", "run"])
@pytest.mark.parametrize(("token", "mode", "code", "words"), CASES,
                         ids=["long-0600", "long-0640", "short-0600", "long-0644", "long-0602", "none-0644"])
def test_config_check_and_run_refuse_a_short_or_exposed_token(tmp_path, command, token, mode, code, words):
    config = write(tmp_path, token, mode)
    if command == "config check":
        result = run_cli("config", "check", str(config))
    elif code == 0:
        return  # a good config starts a daemon: test_http_api.py runs those
    else:
        result = run_cli("run", "--config", str(config), timeout=60)
    assert result.returncode == code, result.stderr
    if words:
        assert str(config) in result.stderr and words in result.stderr, result.stderr
        assert "chmod o-rwx" in result.stderr or "at least 32" in result.stderr
        assert token not in result.stderr + result.stdout and "Traceback" not in result.stderr
