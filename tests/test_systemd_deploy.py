"""The systemd deployment of docs/deployment.md, followed literally under a real systemd in a container.

A Debian 12 root made by debootstrap (cached outside the repo, keyed by its package list) is
copied per run; a copy of this checkout with a wheel folder filled on the host by docs/deployment.md's
offline recipe goes inside. systemd-nspawn boots it with a private network (loopback only: the
daemon's checker is degraded, which is expected) and a oneshot unit runs tests/systemd/scenario.sh:
an install from a wheel folder that lacks setuptools (pip fails, the script says what to do), the
page's offline install command (without `sudo`), then `systemctl start/reload/stop`,
`proxycheck status` as the service user, a loopback judge of our own as [targets] applied by a
reload (so the checker works offline), the HTTP endpoint switched on as a user would (the token
read by a member of the proxycheck group, `/status`, `/metrics`, the page's login and fleet;
tests/systemd/http_check.py), a worker in the service group writing a report, and a second
install over the first (which restarts the service). The results are files in the root, read
here after the container powers off.

Never boot systemd against the host's own root: its tmpfiles clean-up empties the host's /tmp.

Needs root, debootstrap and systemd-nspawn (Debian: debootstrap, systemd-container) and a Debian
mirror the first time; skipped without them, and failing instead with PROXYCHECK_REQUIRE_SYSTEMD=1
(set in CI) so CI cannot pass by skipping.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

pytestmark = pytest.mark.systemd

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT = ROOT / "docs" / "deployment.md"  # the deployment this test follows
SUITE = "bookworm"
MIRROR = os.environ.get("PROXYCHECK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What a Debian server has that minbase lacks: systemd as init, dbus for systemctl, python3 with
# venv, procps for /bin/kill (the unit's ExecReload=).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "procps", "python3", "python3-venv")
CACHE = Path(os.environ.get("PROXYCHECK_NSPAWN_CACHE", Path.home() / ".cache" / "proxycheck-nspawn"))

SCENARIO_UNIT = """\
[Unit]
Description=proxycheck deployment scenario (tests/test_systemd_deploy.py)
Wants=dbus.service
After=dbus.service systemd-sysusers.service
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/bash /scenario.sh
StandardOutput=file:/results/scenario.log
StandardError=inherit
TimeoutStartSec=600
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    for tool in ("debootstrap", "systemd-nspawn"):
        if not shutil.which(tool):
            return f"{tool} is not installed (Debian: apt install debootstrap systemd-container)"
    return None


@pytest.fixture(scope="module")
def base_root() -> Path:
    """A bootable Debian root, made once per package list and reused (about a minute to make)."""
    missing = _missing()
    if missing:
        if os.environ.get("PROXYCHECK_REQUIRE_SYSTEMD") == "1":
            pytest.fail(f"PROXYCHECK_REQUIRE_SYSTEMD=1 but the systemd deployment test cannot run: {missing}", pytrace=False)
        pytest.skip(f"!!! SYSTEMD DEPLOYMENT TEST NOT RUN: {missing}")
    key = hashlib.sha256(f"{SUITE} minbase {' '.join(PACKAGES)} {MIRROR}".encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one debootstrap at a time; the others wait and reuse it
        if not (root / "usr/lib/systemd/systemd").exists():
            _debootstrap(root)
    return root


def _debootstrap(root: Path) -> None:
    """Make ROOT with debootstrap (about a minute), atomically: a half-made root is never used."""
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    made = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                           str(partial), MIRROR], capture_output=True, text=True, timeout=1200)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    partial.rename(root)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """This checkout as git sees it (tracked and new files, nothing ignored: no .venv, no build/)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("checkout") / "proxycheck"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def documented_offline_commands() -> tuple[str, str]:
    """docs/deployment.md's offline recipe: (what runs online, what runs on the offline machine)."""
    section = DEPLOYMENT.read_text().split("\n### Installing offline\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert block, "docs/deployment.md's 'Installing offline' section has no ```sh block"
    lines = block.group(1).splitlines()
    online = [line for line in lines if "deploy/install.sh" not in line]
    offline = [re.sub(r"^sudo ", "", line) for line in lines if "deploy/install.sh" in line]
    return "\n".join(online), "\n".join(offline)


def test_readme_offline_install_passes_pip_variables_after_sudo():
    # sudo drops the caller's environment: `PIP_NO_INDEX=1 ... sudo deploy/install.sh` goes online.
    block = DEPLOYMENT.read_text().split("\n### Installing offline\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    (install,) = [line for line in block.splitlines() if "deploy/install.sh" in line]
    assert re.match(r"sudo PIP_NO_INDEX=1 PIP_FIND_LINKS=\S+ deploy/install.sh \.", install), install
    online, _ = documented_offline_commands()
    assert "setuptools" in online and " wheel" in online, online  # what building the checkout needs


@pytest.fixture(scope="module")
def wheelhouse(checkout, tmp_path_factory) -> Path:
    """docs/deployment.md's offline recipe, run on the host in a copy of the checkout: its wheels/ holds
    every dependency (with the postgresql extra), our own wheel and the build backend, so pip
    inside needs no network."""
    build = tmp_path_factory.mktemp("build") / "proxycheck"
    shutil.copytree(checkout, build)  # pip builds in the tree: keep the checkout copy pristine
    online, _ = documented_offline_commands()
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    got = subprocess.run(["bash", "-euc", online.replace("python3 ", f"{sys.executable} ")], cwd=build, env=env,
                         capture_output=True, text=True, timeout=900)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    return build / "wheels"


def documented_deploy_commands() -> str:
    """The first shell block of docs/deployment.md's systemd section, without `sudo`."""
    section = DEPLOYMENT.read_text().split("\n## Running under systemd\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert block, "docs/deployment.md's 'Running under systemd' section has no ```sh block"
    return re.sub(r"(^|&& |; )sudo ", r"\1", block.group(1), flags=re.M)


def test_readme_deploy_commands_use_the_install_script():
    commands = documented_deploy_commands()
    assert "deploy/install.sh" in commands
    assert "sudo" not in commands


def judge_certificate(where: Path) -> None:
    """A CA and a certificate for 127.0.0.1, for the judge the scenario runs on loopback."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    where.mkdir()
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    cert.private_key_pem.write_to_path(str(where / "key.pem"))
    (where / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))


def boot(root: Path, log: Path) -> int:
    """Boot systemd in ROOT until the scenario powers it off; the container's exit status."""
    cmd = ["systemd-nspawn", "--quiet", "-D", str(root), "-b", "--keep-unit", "--register=no",
           "--private-network", "--console=pipe"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            return proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # nspawn asks systemd inside to power off
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


@pytest.fixture(scope="module")
def results(base_root, checkout, wheelhouse, tmp_path_factory) -> Path:
    machine = tmp_path_factory.mktemp("machine")
    root = machine / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base_root), str(root)], check=True, timeout=600)
    try:
        shutil.copytree(checkout, root / "root/proxycheck")
        shutil.copytree(wheelhouse, root / "root/proxycheck/wheels")
        (root / "results").mkdir()
        (root / "install-commands.sh").write_text("set -ex\n" + documented_offline_commands()[1] + "\n")
        shutil.copy2(ROOT / "tests/systemd/scenario.sh", root / "scenario.sh")
        shutil.copy2(ROOT / "tests/systemd/http_check.py", root / "http_check.py")
        judge_certificate(root / "judge")
        unit_dir = root / "etc/systemd/system"
        (unit_dir / "proxycheck-scenario.service").write_text(SCENARIO_UNIT)
        (unit_dir / "multi-user.target.wants").mkdir(exist_ok=True)
        (unit_dir / "multi-user.target.wants/proxycheck-scenario.service").symlink_to(
            "/etc/systemd/system/proxycheck-scenario.service")
        status = boot(root, machine / "console.log")
        out = machine / "results"
        shutil.copytree(root / "results", out)
        console = (machine / "console.log").read_text(errors="replace")
        assert status == 0, f"systemd-nspawn exited {status}:\n{console[-4000:]}"
        assert (out / "done").exists(), "the scenario did not finish:\n" + _read(out, "scenario.log")[-4000:] + console[-3000:]
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _read(results: Path, name: str) -> str:
    path = results / name
    return path.read_text(errors="replace") if path.exists() else f"({name} missing)"


def step(results: Path, name: str) -> tuple[int, str]:
    return int(_read(results, f"{name}.rc").strip() or -1), _read(results, f"{name}.out")


def props(results: Path, name: str) -> dict[str, str]:
    rc, out = step(results, name)
    assert rc == 0, out
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_install_script_refuses_a_package_name(results):
    rc, out = step(results, "refuse_a_name")
    # `proxycheck` is also the import package's directory in the checkout: still not a project.
    assert (rc, out) == (2, "install.sh: proxycheck[postgresql] is neither a checkout (a directory with pyproject.toml) "
                            "nor a wheel or sdist file; usage: deploy/install.sh CHECKOUT_OR_WHEEL   "
                            "(as root, e.g. deploy/install.sh .)\n"), out


def test_install_commands_succeed(results):
    rc, out = step(results, "install")
    assert rc == 0, out
    assert "Active: active (running)" in out, out


def test_start_reaches_active_after_ready(results):
    # Type=notify: `systemctl start` (inside install.sh) returns, and the unit is "active", only
    # after the daemon sent READY=1; before that it is "activating".
    show = props(results, "after_start")
    assert show["Type"] == "notify"
    assert (show["ActiveState"], show["SubState"]) == ("active", "running"), show
    assert show["NRestarts"] == "0", show
    assert show["StatusText"], show  # the daemon's STATUS= reached systemd through $NOTIFY_SOCKET
    journal = step(results, "journal")[1]
    assert "ready:" in journal, journal[-3000:]


def test_daemon_and_migration_run_as_the_service_user(results):
    assert step(results, "main_pid_user") == (0, "proxycheck\n")
    uid = step(results, "service_uid")[1].strip()
    entries = [json.loads(line) for line in step(results, "journal_json")[1].splitlines() if line.startswith("{")]
    migrated = [e for e in entries if "migrated empty -> " in str(e.get("MESSAGE"))]  # ExecStartPre=
    assert [e["_UID"] for e in migrated] == [uid], entries
    journal = step(results, "journal")[1]
    assert "PermissionError" not in journal and "Traceback" not in journal, journal[-3000:]


def test_status_as_the_service_user(results):
    rc, text = step(results, "status_text")
    assert rc in (0, 1), text  # 1: no healthy proxy (none yet, and no network), not an error
    rc, out = step(results, "status_json_before")
    assert rc in (0, 1), out
    before = json.loads(out)
    assert before["summary"]["total"] == 0, before["summary"]
    assert before["summary"]["checker"]["state"] != "not running", before["summary"]


def test_reload_applies_targets_and_the_checker_works_under_the_sandbox(results):
    # Public targets cannot be reached in the container (degraded, above); with [targets] on a
    # loopback judge and a reload (SIGHUP: same main PID, no restart), the daemon builds a new
    # checker whose preflight passes: direct HTTP and verified TLS with the CA file, as the
    # service user under the unit's hardening.
    rc, out = step(results, "reload_targets")
    assert rc == 0, out
    show = props(results, "after_reload_targets")
    start = props(results, "after_start")
    assert show["ActiveState"] == "active" and (show["MainPID"], show["NRestarts"]) == (start["MainPID"], "0"), show
    checker = json.loads(step(results, "status_json_judged")[1])["summary"]["checker"]
    assert (checker["state"], checker["reason"]) == ("ok", None), checker


def test_reload_applies_a_new_source_row(results):
    rc, out = step(results, "reload")
    assert rc == 0, out
    after = json.loads(_read(results, "status_json_after.out"))
    assert [p["proxy"] for p in after["proxies"]] == ["socks5://192.0.2.50:1080"], after["proxies"]
    # ... and checked within seconds by the working checker: a documentation address with no
    # route is the proxy's fault (25), explained.
    (proxy,) = after["proxies"]
    assert (proxy["state"], proxy["code"]) == ("unhealthy", 25), proxy
    assert "192.0.2.50:1080" in proxy["detail"], proxy
    show = props(results, "after_reload")
    assert show["ActiveState"] == "active" and show["MainPID"] == props(results, "after_start")["MainPID"], show


def test_a_worker_in_the_group_writes_reports(results):
    # The unit's UMask=0007 must reach the SQLite files: a worker in the proxycheck group writes
    # its reports (and counted picks) into the same database and its -wal/-shm files.
    rc, out = step(results, "worker_report")
    assert rc == 0 and "ERROR_PROXY_CONNECT_REFUSED" in out, out


def test_reinstall_upgrades_in_place_and_keeps_the_sources(results):
    rc, out = step(results, "reinstall")
    assert rc == 0, out
    assert step(results, "postgresql_driver") == (0, "psycopg\n")  # the wheel's [postgresql] extra
    show = props(results, "after_reinstall")
    assert show["ActiveState"] == "active" and show["MainPID"] != props(results, "after_start")["MainPID"], show
    rc, out = step(results, "status_json_reinstalled")
    assert [p["proxy"] for p in json.loads(out)["proxies"]] == ["socks5://192.0.2.50:1080"], out


def test_stop_exits_0(results):
    rc, out = step(results, "stop")
    assert rc == 0, out
    show = props(results, "after_stop")
    assert (show["ActiveState"], show["Result"], show["ExecMainStatus"]) == ("inactive", "success", "0"), show


def test_state_lands_in_var_lib_proxycheck(results):
    rc, out = step(results, "files")
    assert rc == 0, out
    modes = {line.split()[2]: line.split()[:2] for line in out.splitlines()}
    assert modes["/var/lib/proxycheck/proxycheck.db"] == ["proxycheck:proxycheck", "660"], out
    assert modes["/var/lib/proxycheck"] == ["proxycheck:proxycheck", "770"], out
    assert modes["/etc/proxycheck/proxies.csv"] == ["root:proxycheck", "640"], out
    assert modes["/etc/proxycheck/proxycheck.toml"] == ["root:proxycheck", "640"], out


def test_a_failing_pip_ends_with_what_to_do(results):
    # The wheel folder lacks setuptools, which building the checkout needs: pip fails, and the
    # script's last line gives the offline recipe instead of leaving the user with pip's error.
    rc, out = step(results, "offline_without_wheels")
    assert rc == 2, out
    last = out.rstrip("\n").splitlines()[-1]
    assert last.startswith("install.sh: pip could not install . (its error is above)."), out[-3000:]
    assert "sudo PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels deploy/install.sh ." in last, last
    assert 'docs/deployment.md "Installing offline"' in last, last


def test_a_group_member_reads_the_token(results):
    # docs/deployment.md: workers in the proxycheck group use the token (`proxycheck token`).
    rc, out = step(results, "token_as_group_member")
    assert rc == 0 and len(out.strip()) >= 40, out if rc else "(a token)"
    assert step(results, "token_file") == (0, "proxycheck:proxycheck 640\n")


def http_seen(results: Path, name: str) -> dict:
    rc, out = step(results, name)
    assert rc == 0, out
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["http", "http_after_reload", "http_reinstalled"])
def test_the_http_endpoint_and_page_under_the_unit(results, name):
    # /status renders in a helper process that lowers its priority (setpriority, allowed by the
    # unit after it denies @resources); under the unit it answered 503 every time before.
    seen = http_seen(results, name)
    assert seen["status"] == [200, 200, 200], seen["status_errors"]
    assert seen["status_proxies"] == ["socks5://192.0.2.50:1080"], seen
    assert seen["metrics"] == [200, 200, 200] and seen["metrics_has_proxies"], seen
    assert seen["without_token"] == 401, seen
    assert seen["page_before_login"] == 303 and seen["login"] == [303, "/ui/"], seen
    assert (seen["fleet"], seen["fleet_total"]) == (200, True), seen
    assert (seen["proxies_page"], seen["proxies_page_lists"]) == (200, ["192.0.2.50:1080"]), seen
    assert seen["token_in_pages"] is False


def test_the_status_helper_runs_at_lower_priority(results):
    rc, out = step(results, "helper_nice")
    assert rc == 0, out
    helpers = [line.split(None, 1) for line in out.splitlines() if "status_proc import main" in line]
    assert [nice for nice, _ in helpers] == ["10"], out
    assert step(results, "http_reload")[0] == 0


def test_reload_restart_and_stop_leave_nothing_to_sigkill(results):
    # A /status helper is running at the reload, the reinstall's restart and the stop: systemd
    # must find every process gone when the daemon exits (KillMode=mixed SIGKILLs leftovers).
    journal = step(results, "journal")[1]
    assert "SIGKILL" not in journal and "Killing process" not in journal, journal[-4000:]
    assert step(results, "left_behind") == (0, ""), step(results, "left_behind")
    assert "status=9/KILL" not in journal and "code=killed" not in journal, journal[-4000:]


def test_documentation_is_the_installed_readme(results):
    """The unit names the README, installed with the docs/ pages it links to (the step tests both)."""
    rc, out = step(results, "documentation")
    assert (rc, out) == (0, "file:/usr/share/doc/proxycheck/README.md\n"), out


def test_doctor_asks_the_endpoint_under_the_unit(results):
    # `proxycheck doctor` as a member of the group: with [http] on it asks GET /status with the
    # token, so the 503 the unit's filter caused would have been a FAIL line here.
    rc, out = step(results, "doctor")
    (line,) = [ln for ln in out.splitlines() if ln.split()[1:2] == ["http:"]]
    assert line == ("OK   http: http://127.0.0.1:8181: GET /status with the token (/var/lib/proxycheck/http-token) "
                    "answered 200"), out
