"""Where the HTTP token comes from (http_token.py): one order for the daemon and its workers,
a generated file that is never readable by others, and errors that never show the token."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import threading

import pytest

from proxycheck.config import Settings, load_settings
from proxycheck.errors import ConfigError
from proxycheck.http_token import TOKEN_FILE, ensure_token, find_token, worker_token


def settings_in(tmp_path, token: str = "") -> Settings:
    s = Settings(state_dir=str(tmp_path / "state"))
    return dataclasses.replace(s, http=dataclasses.replace(s.http, token=token))


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_generated_once_with_mode_0640_then_reused(tmp_path, umask):
    # 0640: the daemon's group (proxycheck, for workers) reads it, as the messages and docs/http-api.md say;
    # the mode must not depend on the caller's umask (077 would take the group's read away).
    s = settings_in(tmp_path)
    old_umask = os.umask(umask)
    try:
        first = ensure_token(s, environ={})
    finally:
        os.umask(old_umask)
    path = tmp_path / "state" / TOKEN_FILE
    assert first.created and first.source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert len(first.value) >= 40 and path.read_text() == first.value + "\n"
    again = ensure_token(s, environ={})
    assert (again.value, again.created) == (first.value, False)
    assert worker_token(s, environ={}) == first.value
    assert [p.name for p in path.parent.iterdir()] == [TOKEN_FILE]  # no temporary file left


def test_two_daemons_starting_at_once_agree(tmp_path):
    s = settings_in(tmp_path)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(ensure_token(s, environ={}).value)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1


ENV_TOKEN, CONFIG_TOKEN = "from-env-" + "e" * 32, "from-config-" + "c" * 32


@pytest.mark.parametrize("environ, token, expected", [
    ({"PROXYCHECK_TOKEN": ENV_TOKEN}, CONFIG_TOKEN, (ENV_TOKEN, "$PROXYCHECK_TOKEN")),
    ({}, CONFIG_TOKEN, (CONFIG_TOKEN, "[http].token")),
    ({"PROXYCHECK_TOKEN": "  "}, CONFIG_TOKEN, (CONFIG_TOKEN, "[http].token")),
])
def test_order_env_then_config_then_file(tmp_path, environ, token, expected):
    s = settings_in(tmp_path, token)
    found = ensure_token(s, environ=environ)
    assert (found.value, found.source) == expected
    assert not (tmp_path / "state" / TOKEN_FILE).exists()  # nothing generated when a token is given


def test_a_world_readable_token_file_is_refused_without_showing_it(tmp_path):
    s = settings_in(tmp_path)
    value = ensure_token(s, environ={}).value
    path = tmp_path / "state" / TOKEN_FILE
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by every user .*chmod 640") as info:
        find_token(s, environ={})
    assert value not in str(info.value)
    path.chmod(0o640)  # a group of workers may read it
    assert find_token(s, environ={}).value == value


def test_an_empty_token_file_names_the_file(tmp_path):
    s = settings_in(tmp_path)
    path = tmp_path / "state" / TOKEN_FILE
    path.parent.mkdir()
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"{path} must hold one line"):
        ensure_token(s, environ={})


def test_a_worker_finds_the_file_through_the_config(tmp_path, monkeypatch):
    config = tmp_path / "proxycheck.toml"
    config.write_text('state_dir = "state"\n[http]\nenabled = true\n')
    daemon_side = ensure_token(load_settings(str(config), environ={}), environ={})
    monkeypatch.delenv("PROXYCHECK_TOKEN", raising=False)
    monkeypatch.setenv("PROXYCHECK_CONFIG", str(config))
    monkeypatch.chdir(tmp_path / "state")  # anywhere: the config's relative state_dir is anchored to the file
    from proxycheck.worker import http_token

    assert http_token() == daemon_side.value


def test_no_token_yet_says_where_it_looked(tmp_path):
    s = settings_in(tmp_path)
    with pytest.raises(ConfigError, match=r"\$PROXYCHECK_TOKEN is not set, \[http\].token is empty .* does not exist yet"):
        worker_token(s, environ={})


@pytest.mark.parametrize("value", ["has space", "naïve-tökén", "tab\there"])
def test_a_token_that_cannot_travel_in_a_header_is_refused_without_showing_it(tmp_path, value):
    with pytest.raises(ConfigError, match=r"from \[http\].token must be printable ASCII") as info:
        find_token(settings_in(tmp_path, value), environ={})
    assert value not in str(info.value)


@pytest.mark.parametrize("environ, token, file_value, source", [
    ({"PROXYCHECK_TOKEN": "Q7-env-value"}, "", None, "$PROXYCHECK_TOKEN"),
    ({}, "", "Q7-file-value", "http-token"),
])
def test_a_short_token_is_refused_from_every_source(tmp_path, environ, token, file_value, source):
    """At least 32 characters (config.MIN_TOKEN_LENGTH), wherever the token comes from."""
    s = settings_in(tmp_path, token)
    if file_value:
        path = tmp_path / "state" / TOKEN_FILE
        path.parent.mkdir()
        path.write_text(file_value + "\n")
        path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"the HTTP token from .*{re.escape(source)}.* must be at least 32 characters") as info:
        find_token(s, environ=environ)
    assert "Q7-" not in str(info.value)
