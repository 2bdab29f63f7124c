"""What a user of the HTTP endpoint does, run inside the container by scenario.sh with the
installed program's Python (httpx is a dependency). The token comes on stdin (from
`proxycheck token` run by a member of the proxycheck group); one JSON object goes to stdout:
the answers' status codes and what the page showed, for tests/test_systemd_deploy.py to assert.
The token itself is never printed.
"""

import json
import sys

import httpx

BASE = sys.argv[1]  # http://127.0.0.1:8181
token = sys.stdin.read().strip()
seen: dict = {"token_length": len(token)}
with httpx.Client(base_url=BASE, trust_env=False, timeout=30, follow_redirects=False) as api:
    bearer = {"Authorization": f"Bearer {token}"}
    answers = [api.get("/status", headers=bearer) for _ in range(3)]
    seen["status"] = [r.status_code for r in answers]
    seen["status_errors"] = [r.text[:300] for r in answers if r.status_code != 200]
    seen["status_proxies"] = [p["proxy"] for p in answers[-1].json().get("proxies", [])] if answers[-1].status_code == 200 else []
    metrics = [api.get("/metrics", headers=bearer) for _ in range(3)]
    seen["metrics"] = [r.status_code for r in metrics]
    seen["metrics_has_proxies"] = "proxycheck_proxies{" in metrics[-1].text
    seen["without_token"] = api.get("/status").status_code
with httpx.Client(base_url=BASE, trust_env=False, timeout=30, follow_redirects=False) as browser:
    seen["page_before_login"] = browser.get("/ui/").status_code
    login = browser.post("/ui/login", data={"token": token}, headers={"Origin": BASE})
    seen["login"] = [login.status_code, login.headers.get("Location")]
    fleet = browser.get("/ui/")
    table = browser.get("/ui/proxies")
    seen["fleet"] = fleet.status_code
    seen["fleet_total"] = "proxies" in fleet.text
    seen["proxies_page"] = table.status_code
    seen["proxies_page_lists"] = [key for key in ("192.0.2.50:1080",) if key in table.text]
    seen["token_in_pages"] = token in fleet.text or token in table.text
print(json.dumps(seen))
