"""How fast the status page answers at fleet scale: 100,000 proxies and a week of history in SQLite.

    .venv/bin/python bench/page_bench.py                       # 100,000 proxies, 30 checks each over 7 days
    .venv/bin/python bench/page_bench.py --proxies 10000 --keep /tmp/page.db

It builds the database (Alembic-migrated, rows written with executemany), starts the real
endpoint (``HttpApi``, the class ``proxycheck run`` serves, on a reader engine) in this process,
logs in, and times with a plain HTTP client, each cold (first request) then the median of
``--repeat`` warm ones:

- **first paint**: ``GET /ui/`` plus every asset the HTML names (CSS, uPlot, charts.js), one
  after the other: what a browser needs before it paints;
- **chart data**: ``/ui/data/over-time/24h`` and ``7d`` (fetched by charts.js after the paint;
  history aggregated in SQL); cold = the SQL, warm = reused for 30 s;
- **table pages**: the first page, a deep page sorted by latency, and a filtered page;
- with chromium installed (``/usr/bin/chromium`` + ``chromedriver``), also the browser's own
  ``first-contentful-paint`` and ``loadEventEnd`` of ``/ui/`` (``--no-browser`` skips it).

Targets: first paint and a table page each under 1 s. The box may be shared: the figures are
wall times on whatever CPU was free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from proxycheck.config import settings_from_dict
from proxycheck.http_api import HttpApi
from proxycheck.store import make_engine
from proxycheck.store.migrate import upgrade
from proxycheck.world import free_port

TOKEN = "bench-token-0123456789abcdef-0123456789"  # [http].token takes 32 characters or more
CODES = [25, 25, 25, 26, 27, 28, 29, 35, 36, 49]
TARGETS = ["recaptcha", "turnstile", "hcaptcha"]


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")  # UTCDateTime's SQLite form (naive UTC)


def build(path: Path, proxies: int, checks_per_proxy: int, days: float, seed: int = 1) -> dict:
    """An Alembic-migrated SQLite file with ``proxies`` proxies and a history of ``checks_per_proxy``
    checks each, spread over ``days`` days (states: 80 % healthy, 15 % unhealthy, 5 % unknown)."""
    rnd = random.Random(seed)
    url = f"sqlite:///{path}"
    upgrade(url)
    now = datetime.now(UTC)
    began = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    states = []
    rows = []
    for i in range(1, proxies + 1):
        r = rnd.random()
        state = "healthy" if r < 0.80 else ("unhealthy" if r < 0.95 else "unknown")
        code = rnd.choice(CODES) if state == "unhealthy" else None
        states.append((state, code))
        scheme = "socks5" if i % 4 == 0 else "http"
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        banned = json.dumps([rnd.choice(TARGETS)] if rnd.random() < 0.05 else [])
        rows.append((i, f"{scheme}://user{i}@{host}:8080", scheme, host, 8080, f"user{i}", f"secret-pass-{i}",
                     json.dumps(["dc1" if i % 2 else "dc2"]), "bench", 1, _ts(now), _ts(now), state, code,
                     "connect_refused" if code else None, _ts(now - timedelta(seconds=rnd.uniform(0, 600))),
                     _ts(now + timedelta(seconds=rnd.uniform(0, 600))), rnd.uniform(50, 3000) if state == "healthy" else None,
                     f"198.51.{i >> 8 & 255}.{i & 255}", rnd.choice(["elite", "anonymous", "transparent"]), banned))
    db.executemany(
        "INSERT INTO proxies (id, key, scheme, host, port, username, password, tags, source, enabled, created_at, "
        "updated_at, state, code, reason, last_checked_at, next_check_at, latency_ms, exit_ip, anonymity, banned_on) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    rows.clear()
    span = days * 86400
    batch = []
    total = 0
    for i in range(1, proxies + 1):
        state, code = states[i - 1]
        for k in range(checks_per_proxy):
            at = now - timedelta(seconds=span * (k + rnd.random()) / checks_per_proxy)
            if state == "unknown" and k == 0:
                healthy, c = None, None
            elif state == "unhealthy" and rnd.random() < 0.7:
                healthy, c = 0, code
            else:
                healthy, c = (1, None) if rnd.random() < 0.9 else (0, rnd.choice(CODES))
            batch.append((i, _ts(at), healthy, c, "[]"))
        if len(batch) >= 200_000:
            db.executemany("INSERT INTO checks (proxy_id, checked_at, healthy, code, probes) VALUES (?,?,?,?,?)", batch)
            total += len(batch)
            batch.clear()
    db.executemany("INSERT INTO checks (proxy_id, checked_at, healthy, code, probes) VALUES (?,?,?,?,?)", batch)
    total += len(batch)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return {"proxies": proxies, "checks": total, "build_s": round(time.perf_counter() - began, 1),
            "db_mb": round(path.stat().st_size / 1e6, 1)}


class Endpoint:
    """The real HttpApi on a reader engine, its event loop in a thread of this process."""

    def __init__(self, url: str, state_dir: Path) -> None:
        self.settings = settings_from_dict({"database_url": url, "state_dir": str(state_dir),
                                            "http": {"enabled": True, "listen": f"127.0.0.1:{free_port()}", "token": TOKEN}},
                                           "bench")
        self.engine = make_engine(url, writer=False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = HttpApi(self.settings, self.engine, None, None, lambda: ("ok", ""))
        self.base = asyncio.run_coroutine_threadsafe(self.api.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.engine.dispose()


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def first_paint(c: httpx.Client) -> None:
    page = c.get("/ui/")
    page.raise_for_status()
    for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
        c.get(asset).raise_for_status()


def measure(base: str, repeat: int) -> dict[str, dict[str, float]]:
    c = httpx.Client(base_url=base, trust_env=False, timeout=120)
    assert c.post("/ui/login", data={"token": TOKEN}, headers={"Origin": base}).status_code == 303
    cases = {
        "first paint (/ui/ + assets)": lambda: first_paint(c),
        "chart data 24h": lambda: c.get("/ui/data/over-time/24h").raise_for_status(),
        "chart data 7d": lambda: c.get("/ui/data/over-time/7d").raise_for_status(),
        "table page 1": lambda: c.get("/ui/proxies").raise_for_status(),
        "table page 1000 by latency": lambda: c.get("/ui/proxies?sort=latency&desc=1&page=1000").raise_for_status(),
        "table unhealthy code 28 socks5": lambda: c.get("/ui/proxies?state=unhealthy&code=28&scheme=socks5").raise_for_status(),
        "table banned on turnstile, tag dc1": lambda: c.get("/ui/proxies?target=turnstile&tag=dc1").raise_for_status(),
        "one proxy's page": lambda: c.get("/ui/proxies/4242").raise_for_status(),
    }
    out = {}
    for name, fn in cases.items():
        cold = timed(fn)
        warm = [timed(fn) for _ in range(repeat)]
        out[name] = {"cold_ms": round(cold * 1000, 1), "warm_median_ms": round(statistics.median(warm) * 1000, 1)}
    body = c.get("/ui/proxies?sort=latency&desc=1&page=1000").text
    assert "secret-pass-" not in body, "a password in the table"
    c.close()
    return out


def browser_timing(base: str, profile: Path) -> dict[str, str] | None:
    if not (shutil.which("/usr/bin/chromium") and shutil.which("/usr/bin/chromedriver")):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(base + "/ui/login")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        out = {}
        for name, path in (("/ui/", "/ui/"), ("table page 1000", "/ui/proxies?sort=latency&desc=1&page=1000")):
            driver.get(base + path)
            timing = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                "return [p ? p.startTime : null, n.loadEventEnd];")
            out[f"chromium {name}: first-contentful-paint"] = f"{timing[0]:.0f} ms" if timing[0] is not None else "not reported"
            out[f"chromium {name}: loadEventEnd"] = f"{timing[1]:.0f} ms"
        return out
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxies", type=int, default=100_000)
    ap.add_argument("--checks-per-proxy", type=int, default=30,
                    help="history rows per proxy (retention keeps 20 per proxy at least, failures for 3 days)")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build (or reuse, if it exists) this SQLite file")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="page-bench-"))
    path = args.keep or work / "page.db"
    if path.exists():
        built = {"reused": str(path)}
    else:
        built = build(path, args.proxies, args.checks_per_proxy, args.days)
    print("database:", json.dumps(built), flush=True)
    endpoint = Endpoint(f"sqlite:///{path}", work / "state")
    try:
        for name, figures in measure(endpoint.base, args.repeat).items():
            print(f"{name:<38} cold {figures['cold_ms']:>8.1f} ms   warm median {figures['warm_median_ms']:>8.1f} ms")
        if not args.no_browser:
            timing = browser_timing(endpoint.base, work / "chromium")
            for name, ms in (timing or {"chromium": "not installed"}).items():
                print(f"{name:<44} {ms}")
    finally:
        endpoint.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
