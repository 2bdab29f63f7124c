"""`proxycheck doctor`: a healthy setup is all OK; each broken part is one FAIL line naming its fix.

Real parts throughout: a judge in-process on loopback (HTTP and HTTPS, trustme CA), SQLite
migrated by Alembic, daemon instances registered through the store's own functions.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import trustme

from proxycheck import doctor
from proxycheck.config import judge_targets, load_settings
from proxycheck.config_targets import targets_toml
from proxycheck.judge import Judge, JudgeOptions
from proxycheck.store import heartbeat, make_engine, mark_stopped, register_instance, upgrade
from proxycheck.store._rows import utcnow

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    d = tmp_path_factory.mktemp("judge")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(d / "judge.pem"))
    j = Judge(JudgeOptions(listen=(HOST, 0), tls_listen=(HOST, 0), cert_file=str(d / "judge.pem"),
                           key_file=str(d / "judge.pem"))).start()
    j.ca_file = d / "ca.pem"
    yield j
    j.stop()


def write_config(tmp_path: Path, http: str, https: str, ca_file: Path, *, images: tuple[str, ...] = ("/image.png",),
                 sources: tuple[str, ...] = ()) -> Path:
    q = json.dumps
    config = tmp_path / "proxycheck.toml"
    config.write_text("\n".join([
        'state_dir = "state"',
        targets_toml({**judge_targets(http, https, ca_file), "image_urls": [http + p for p in images]}),
        "[timeouts]",
        "connect = 1.0",
        "read = 2.0",
        "probe = 3.0",
        "[daemon]",
        f"sources = [{', '.join(q(s) for s in sources)}]",
        "",
    ]))
    return config


@pytest.fixture
def config(tmp_path, judge) -> Path:
    return write_config(tmp_path, judge.http_url, judge.https_url, judge.ca_file)


def migrate(config: Path) -> str:
    settings = load_settings(str(config))
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return settings.resolved_database_url


def register_daemon(url: str, *, checker_state: str = "ok", reason: str | None = None, age: float = 0.0,
                    stopped: bool = False) -> None:
    engine = make_engine(url, writer=True)
    try:
        at = utcnow() - timedelta(seconds=age)
        instance = register_instance(engine, now=at, hostname="testhost", pid=4242)
        heartbeat(engine, instance, checker_state, reason, own_ips=[HOST], now=at)
        if stopped:
            mark_stopped(engine, instance)
    finally:
        engine.dispose()


def run(config: Path) -> tuple[int, str, dict[str, list[str]]]:
    out = io.StringIO()
    code = doctor.doctor_command(str(config), out=out)
    text = out.getvalue()
    assert "Traceback" not in text
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(("OK ", "WARN ", "FAIL ")):
            status, _, rest = line.partition(" ")
            lines.setdefault(rest.strip().partition(":")[0], []).append(status + " " + rest.strip())
    return code, text, lines


def test_healthy_setup_is_all_ok(config):
    register_daemon(migrate(config))
    code, text, lines = run(config)
    assert code == 0, text
    assert all(line.startswith("OK ") for line in text.splitlines() if line and not line.startswith("all ")), text
    assert str(config) in lines["config"][0]
    assert "(the latest)" in lines["database"][0]
    assert "a judge (it saw us as 127.0.0.1)" in lines["judge_url"][0]
    assert "127.0.0.1" in lines["own IP"][0]
    assert "running (testhost pid 4242" in lines["daemon"][0]
    assert text.rstrip().endswith("all 11 checks OK")


def test_missing_database_names_db_upgrade_and_creates_nothing(config):
    code, text, lines = run(config)
    assert code == 1
    (db_line,) = lines["database"]
    assert db_line.startswith("FAIL") and "does not exist" in db_line and "run `proxycheck db upgrade`" in db_line
    assert lines["daemon"] == ["FAIL daemon: unknown: the database is not usable (see above)"]
    assert not (config.parent / "state").exists()  # a doctor only looks


def test_empty_database_names_db_upgrade(config):
    (config.parent / "state").mkdir()
    (config.parent / "state" / "proxycheck.db").touch()
    code, _, lines = run(config)
    assert code == 1
    assert "no proxycheck schema yet: run `proxycheck db upgrade`" in lines["database"][0]


def test_judge_down_names_the_judge(tmp_path, judge):
    with socket.socket() as dead:  # bound, never listening: connects are refused
        dead.bind((HOST, 0))
        down = f"http://{HOST}:{dead.getsockname()[1]}"
        config = write_config(tmp_path, down, judge.https_url, judge.ca_file)
        register_daemon(migrate(config))
        code, text, lines = run(config)
    assert code == 1
    (judge_line,) = lines["judge_url"]
    assert judge_line.startswith("FAIL") and "Connection refused" in judge_line
    assert "point [targets].judge_url at a reachable judge: `proxycheck judge --listen 0.0.0.0:8080`" in judge_line
    assert lines["own IP"][0].startswith("FAIL own IP: unknown")
    assert lines["ssl_url"][0].startswith("OK")  # only what is down is blamed


@pytest.mark.parametrize(
    "daemon",
    [
        pytest.param(None, id="never-started"),
        pytest.param({"stopped": True}, id="stopped-cleanly"),
        pytest.param({"age": 300.0}, id="heartbeat-5-minutes-old"),
    ],
)
def test_no_daemon_says_so(config, daemon):
    url = migrate(config)
    if daemon is not None:
        register_daemon(url, **daemon)
    code, _, lines = run(config)
    assert code == 1
    assert lines["daemon"] == [
        "FAIL daemon: no daemon heartbeat in the last 60 s: start the daemon: `systemctl start proxycheck` or `proxycheck run`"
    ]


def test_degraded_daemon_is_a_failure(config):
    register_daemon(migrate(config), checker_state="degraded", reason="cannot reach the judge")
    code, _, lines = run(config)
    assert code == 1
    assert "but its checker is DEGRADED: cannot reach the judge" in lines["daemon"][0]


def test_an_image_target_that_is_not_an_image(tmp_path, judge):
    config = write_config(tmp_path, judge.http_url, judge.https_url, judge.ca_file, images=("/image.png", "/get"))
    register_daemon(migrate(config))
    code, _, lines = run(config)
    assert code == 1
    assert lines["image_urls[0]"][0].startswith("OK")
    assert "returned application/json instead of an image, so every proxy would fail with 35" in lines["image_urls[1]"][0]


def test_sources_are_read(tmp_path, judge):
    (tmp_path / "good.csv").write_text("url\nhttp://203.0.113.7:3128\nhttp://203.0.113.8:3128\n")
    config = write_config(tmp_path, judge.http_url, judge.https_url, judge.ca_file, sources=("good.csv", "missing.csv"))
    _, _, lines = run(config)
    good, missing = lines["sources"]
    assert good.startswith("OK") and "2 proxies" in good
    assert missing.startswith("FAIL") and "missing.csv" in missing and "[daemon].sources" in missing


def test_bad_rows_in_a_source_are_a_warning(tmp_path, judge):
    # The daemon uses the good rows, so the setup works (exit 0), but a row is lost: not "OK".
    (tmp_path / "some-bad.csv").write_text("type,address,port,login,password,tags,label\n"
                                           "http,203.0.113.7,3128,,,,\nhttp://203.0.113.8:3128\n")
    config = write_config(tmp_path, judge.http_url, judge.https_url, judge.ca_file, sources=("some-bad.csv",))
    register_daemon(migrate(config))
    code, text, lines = run(config)
    (line,) = lines["sources"]
    assert line.startswith("WARN sources: ") and "1 proxies; 1 bad row(s) skipped, first: " in line, line
    assert "some-bad.csv:3: row: is a proxy URL" in line and "systemctl reload proxycheck" in line, line
    assert code == 0, text
    assert text.rstrip().endswith("all 11 checks OK, 1 with a WARNING"), text


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def test_http_enabled_but_nothing_answers(config):
    port = free_port()
    config.write_text(config.read_text() + f'[http]\nenabled = true\nlisten = "{HOST}:{port}"\ntoken = "{"t" * 40}"\n')
    config.chmod(0o600)  # it holds the token: a config others can read is refused
    register_daemon(migrate(config))
    code, text, lines = run(config)
    assert code == 1
    (line,) = lines["http"]
    assert line.startswith(f"FAIL http: nothing answers on http://{HOST}:{port} (ConnectError"), line
    assert line.endswith("the daemon reads [http] only at start: `systemctl restart proxycheck` (or restart `proxycheck run`)")
    assert "t" * 40 not in text


def test_a_bad_config_file_is_one_fail_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[targets]\njudge_url = 5\n")
    out = io.StringIO()
    assert doctor.doctor_command(str(bad), out=out) == 1
    assert out.getvalue().startswith("FAIL config: ") and "[targets].judge_url" in out.getvalue()


def test_a_crashing_check_is_a_fail_line_not_a_traceback(config, monkeypatch):
    def boom(settings):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(doctor, "_sources", boom)
    code, text, lines = run(config)
    assert code == 1
    assert lines["sources"] == ["FAIL sources: unexpected error: RuntimeError: disk on fire: run `proxycheck -v doctor` for the traceback"]
    assert "config" in lines and "database" in lines  # the other checks still ran


def test_missing_config_file_in_a_subprocess(tmp_path):
    """What a shell user sees: one line, exit 1, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from proxycheck.doctor import doctor_command; sys.exit(doctor_command(sys.argv[1]))",
         str(tmp_path / "nope.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL config: config file") and "does not exist" in proc.stdout
    assert proc.stderr == ""


def test_an_untrusted_certificate_names_ca_file(tmp_path, judge):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    config = write_config(tmp_path, judge.http_url, judge.https_url, other)
    code, _, lines = run(config)
    assert code == 1
    assert "certificate does not verify" in lines["ssl_url"][0]
    assert "set [targets].ca_file to the CA that signed 127.0.0.1's certificate" in lines["ssl_url"][0]
