"""``proxycheck doctor``: can this installation work? One line per check: OK, WARN or FAIL and the fix.

Rules:
1. Each check returns ``Line``s: OK with what it found, WARN for what works but loses something
   (bad rows in a sources file: the other rows are used), or FAIL with what is wrong and the
   command that fixes it. Only a FAIL makes the exit status 1. The runner prints them; no
   exception gets out (an unexpected one becomes a FAIL line naming it, with the traceback in
   the log at -v).
2. A check whose prerequisite failed says so instead of piling on: with no usable database,
   "daemon" is unknown, not "not running".
3. Doctor only looks. It never writes: a missing SQLite file is reported, never created.
4. The network checks are the daemon's own self-test (``selftest.py``), derived from the probe
   registry: each target a probe declares, asked directly what the probe will ask it, and the
   IP echo. Its fix hints come from the probe modules.
5. With ``[http].enabled``, the endpoint is asked what a worker asks it: ``GET /status?limit=1``
   with the token found as workers find it (``http_token.py``), so a daemon whose endpoint does
   not answer 200 is a FAIL naming the answer.

Order: config, sources, database, each target, own IP, daemon, http.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from . import loop
from .config import Settings, load_settings
from .errors import ProxycheckError

log = logging.getLogger("proxycheck.doctor")

FIX_UPGRADE = "run `proxycheck db upgrade`"
FIX_DAEMON = "start the daemon: `systemctl start proxycheck` or `proxycheck run`"
FIX_RESTART = "the daemon reads [http] only at start: `systemctl restart proxycheck` (or restart `proxycheck run`)"


@dataclass(frozen=True)
class Line:
    ok: bool
    what: str
    detail: str
    fix: str = ""
    warn: bool = False  # ok, but something is lost (rule 1)

    def __str__(self) -> str:
        text = f"{self.what}: {self.detail}"
        if (not self.ok or self.warn) and self.fix:
            text += f": {self.fix}"
        return f"{self.label:<4} {text}"

    @property
    def label(self) -> str:
        return "FAIL" if not self.ok else "WARN" if self.warn else "OK"


def doctor_command(config_path: str | None, *, out: TextIO | None = None) -> int:
    """``proxycheck doctor [--config FILE]``: load the settings (a bad file is the first FAIL)."""
    out = sys.stdout if out is None else out
    try:
        settings = load_settings(config_path)
    except ProxycheckError as exc:
        _emit([Line(False, "config", str(exc), "fix it, then check it with `proxycheck config check FILE`")], out)
        return 1
    return run_doctor(settings, out=out)


def run_doctor(settings: Settings, *, out: TextIO | None = None) -> int:
    """Print one line per check; 0 when every check is OK, 1 otherwise (``out``: default sys.stdout)."""
    out = sys.stdout if out is None else out
    lines: list[Line] = []

    def step(what: str, check, *args) -> list[Line]:
        try:
            found = check(*args)
        except Exception as exc:  # noqa: BLE001 - rule 1: a doctor never dies of what it examines
            log.debug("doctor check %s failed", what, exc_info=True)
            found = [Line(False, what, f"unexpected error: {type(exc).__name__}: {exc}",
                          "run `proxycheck -v doctor` for the traceback")]
        _emit(found, out)
        lines.extend(found)
        return found

    step("config", _config, settings)
    step("sources", _sources, settings)
    database_ok = all(line.ok for line in step("database", _database, settings))
    step("targets", _network, settings)
    if database_ok:
        step("daemon", _daemon, settings)
    else:
        step("daemon", lambda: [Line(False, "daemon", "unknown: the database is not usable (see above)")])
    if settings.http.enabled:
        step("http", _http, settings)
    failed = sum(not line.ok for line in lines)
    warned = sum(line.ok and line.warn for line in lines)
    summary = f"all {len(lines)} checks OK" if not failed else f"{failed} of {len(lines)} checks FAILED"
    if warned:
        summary += f", {warned} with a WARNING"
    print(f"\n{summary}", file=out, flush=True)
    return 0 if not failed else 1


def _emit(lines: list[Line], out: TextIO) -> None:
    for line in lines:
        print(line, file=out, flush=True)


# --- the checks ------------------------------------------------------------------------------


def _config(settings: Settings) -> list[Line]:
    if settings.source_file:
        return [Line(True, "config", f"{settings.source_file} is valid")]
    return [Line(True, "config", "no config file (--config, $PROXYCHECK_CONFIG, ./proxycheck.toml): using the built-in defaults")]


def _sources(settings: Settings) -> list[Line]:
    from .sources import read_csv_file

    if not settings.daemon.sources:
        return [Line(True, "sources", "none in [daemon].sources (proxies come from `proxycheck import`)")]
    lines = []
    for path in settings.daemon.sources:
        try:
            loaded = read_csv_file(path)
        except ProxycheckError as exc:
            lines.append(Line(False, "sources", str(exc), "fix the path in [daemon].sources"))
            continue
        found = f"{path}: {len(loaded.deduplicated())} proxies"
        if loaded.errors:
            lines.append(Line(True, "sources", f"{found}; {len(loaded.errors)} bad row(s) skipped, first: {loaded.errors[0]}",
                              "fix those rows, then `systemctl reload proxycheck` (or restart `proxycheck run`)", warn=True))
        else:
            lines.append(Line(True, "sources", found))
    return lines


def _database(settings: Settings) -> list[Line]:
    from sqlalchemy.engine import make_url

    from .store import current_revision, head_revision, masked_url
    from .store.migrate import alembic_config

    url = settings.resolved_database_url
    where = masked_url(url)
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure is the same advice
        return [Line(False, "database", f"database_url {where} is not a URL",
                     "use sqlite:////path/to/proxycheck.db or postgresql://user@host/dbname")]
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        hint = "" if settings.database_url else f" (from state_dir {settings.state_dir})"
        return [Line(False, "database", f"{parsed.database} does not exist{hint}", FIX_UPGRADE)]
    try:
        current = current_revision(url)
    except ProxycheckError as exc:
        return [Line(False, "database", str(exc))]  # StorageError messages already say what to do
    except ImportError as exc:
        return [Line(False, "database", f"{where} needs a driver that is not installed ({exc.name})",
                     "install the driver (the [postgresql] extra) into the same environment: pip install 'psycopg[binary]>=3.1'")]
    head = head_revision()
    if current == head:
        return [Line(True, "database", f"{where} reachable, schema at {head} (the latest)")]
    if current is None:
        return [Line(False, "database", f"{where} has no proxycheck schema yet", FIX_UPGRADE)]
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        return [Line(False, "database", f"{where} is at schema {current}, newer than this proxycheck knows (it expects {head})",
                     "upgrade proxycheck, or point database_url at another database")]
    return [Line(False, "database", f"{where} is at schema {current}, expected {head}", FIX_UPGRADE)]


def _network(settings: Settings) -> list[Line]:
    return loop.run(_network_checks(settings))


async def _network_checks(settings: Settings) -> list[Line]:
    """The daemon's own self-test (``selftest.preflight``): one line per target the registered
    probes declare, plus the IP echo, then the checker's own IP."""
    from .selftest import preflight
    from .transport import shared_ssl_context

    status = await preflight(settings, shared_ssl_context(settings.targets.ca_file))
    # A target that cannot judge (it answers us as a banned exit) works but gives no verdict: FAIL.
    lines = [Line(c.ok and c.judges, c.key, c.found, c.fix) for c in status.checks]
    if status.ok:
        lines.append(Line(True, "own IP", f"{', '.join(sorted(status.own_ips))} (what a transparent proxy would leak)"))
    else:
        lines.append(Line(False, "own IP", f"unknown, so no proxy can be judged ({status.reason})", "fix the targets above"))
    return lines


def _daemon(settings: Settings) -> list[Line]:
    from .store import live_instances, make_engine
    from .store.instances import STALE_BEATS

    engine = make_engine(settings.resolved_database_url, writer=False)
    try:
        live = live_instances(engine)  # the one liveness rule (store/instances.py rule 1)
    except ProxycheckError as exc:
        return [Line(False, "daemon", f"cannot read heartbeats: {exc}")]
    finally:
        engine.dispose()
    if not live:
        return [Line(False, "daemon", f"no daemon running (none has heartbeated within {STALE_BEATS} of its "
                     "heartbeat intervals)", FIX_DAEMON)]
    now = datetime.now(UTC)
    lines = []
    for inst in live:
        ago = max(0, int((now - _aware(inst.heartbeat_at)).total_seconds()))
        who = f"{inst.hostname} pid {inst.pid}, heartbeat {ago} s ago"
        if inst.checker_state == "ok":
            but = f"; but {inst.checker_reason}" if inst.checker_reason else ""  # targets that cannot judge
            lines.append(Line(True, "daemon", f"running ({who}), checker ok{but}"))
        else:
            lines.append(Line(False, "daemon", f"running ({who}) but its checker is DEGRADED: {inst.checker_reason}",
                              "fix the targets above; the daemon retries on its own"))
    return lines


def _http(settings: Settings) -> list[Line]:
    """Rule 5: ``GET /status?limit=1`` with the workers' token, as a worker would."""
    import httpx

    from .http_token import find_token

    host, _, port = settings.http.listen.rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host.strip("[]"), host.strip("[]"))
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    try:
        token = find_token(settings)
    except ProxycheckError as exc:
        return [Line(False, "http", str(exc))]
    if token is None:
        return [Line(False, "http", f"{base}: no token yet (the daemon writes it on its first start with [http] enabled)",
                     FIX_RESTART)]
    try:
        answer = httpx.get(f"{base}/status", params={"limit": "1"}, headers={"Authorization": f"Bearer {token.value}"},
                           timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        return [Line(False, "http", f"nothing answers on {base} ({type(exc).__name__}: {exc})", FIX_RESTART)]
    if answer.status_code == 200:
        return [Line(True, "http", f"{base}: GET /status with the token ({token.source}) answered 200")]
    try:
        said = answer.json()
        said = f"{said.get('error')}: {said.get('detail')}" if isinstance(said, dict) else answer.text[:200]
    except ValueError:
        said = answer.text[:200]
    fix = ("the daemon uses another token: restart it after changing [http].token, or use the one it wrote"
           if answer.status_code == 401 else "see the daemon's log: `journalctl -u proxycheck`")
    return [Line(False, "http", f"{base}: GET /status with the token ({token.source}) answered "
                                f"{answer.status_code} ({said})", fix)]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
