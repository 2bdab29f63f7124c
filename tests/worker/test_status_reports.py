"""Worker reports as the operator sees them: `proxycheck status` (table and --json) and
`proxycheck history`, run as the installed CLI against the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .helpers import fleet, proxy


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_")}
    env["PROXYCHECK_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "proxycheck", *args], env=env, capture_output=True, text=True, timeout=60)


def test_status_and_history_show_reports_and_the_guard_rail(writer, migrated_url, make_pool):
    proxies = fleet(writer, [proxy(n) for n in range(20)])
    pool = make_pool(max_reported_percent=10)  # 2 of 20 may be taken out per window
    results = [pool.report(p, {"errorId": 28, "errorCode": "ERROR_PROXY_BANNED"}, worker="w1") for p in proxies[:3]]
    assert [r.applied for r in results] == [True, True, False]

    status = cli(migrated_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    fb = json.loads(status.stdout)["summary"]["feedback"]
    assert (fb["reports"], fb["took_out"], fb["budget"], fb["held_back"], fb["guard_rail_holding"]) == (3, 2, 2, 1, True)
    assert fb["by_error"] == [{"error": "ERROR_PROXY_BANNED", "reports": 3}]

    table = cli(migrated_url, "status")
    assert "feedback: 3 worker reports in the last 5 min, 2 proxies taken out (limit 2 = 10% of 20)" in table.stdout
    assert "GUARD RAIL HOLDING: 1 reports not applied" in table.stdout
    assert "pw" not in table.stdout and "pw" not in status.stdout

    held = cli(migrated_url, "history", proxies[2].masked_url, "--json")
    assert held.returncode == 0, held.stderr
    body = json.loads(held.stdout)
    assert body["proxy"] == proxies[2].key and len(body["checks"]) == 1 and body["checks"][0]["healthy"] is True
    assert [(r["worker"], r["error"], r["applied"], r["why_not"]) for r in body["reports"]] == [
        ("w1", "ERROR_PROXY_BANNED", False, "guard_rail")
    ]
    text = cli(migrated_url, "history", proxies[0].masked_url)
    assert "ERROR_PROXY_BANNED (proxy_error) from w1; applied" in text.stdout, text.stdout
    assert ":pw@" not in text.stdout


def test_history_of_an_unknown_proxy_says_so(migrated_url):
    done = cli(migrated_url, "history", "http://198.51.100.9:3128")
    assert done.returncode == 2
    assert "no proxy http://198.51.100.9:3128 in the database" in done.stderr and "Traceback" not in done.stderr
