"""``proxycheck explain CODE``: what an anti-captcha proxy error means and how to fix it.

One entry per code in scope, as data. ``status`` and ``check`` point here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .verdict import ERROR_NAMES, REASONS


@dataclass(frozen=True)
class Explanation:
    meaning: str
    causes: tuple[str, ...]
    fixes: tuple[str, ...]


EXPLANATIONS: dict[int, Explanation] = {
    25: Explanation(
        "The captcha service could not open a TCP connection to the proxy: the port actively refused it.",
        ("nothing listens on that address and port (proxy stopped, wrong port)",
         "a firewall rejects the service's address (REJECT rule, cloud security group)",
         "the provider allow-lists client IPs and the captcha service's IPs are not on it"),
        ("check the proxy process runs and listens on the public address: `ss -ltnp | grep PORT`",
         "squid: `http_port 0.0.0.0:3128`; tinyproxy: `Port` and no `Listen 127.0.0.1`; dante: `internal: eth0 port = 1080`",
         "providers with IP allow-lists: use login/password authentication instead, since the service's workers' IPs vary"),
    ),
    26: Explanation(
        "The TCP connect to the proxy timed out: packets to it vanish.",
        ("the host is down or the address is wrong", "a firewall DROPs instead of rejecting",
         "the proxy's listen queue is full (overloaded)"),
        ("check the address and that the host answers at all", "open the port in the firewall / security group",
         "for overloaded proxies: raise the listen backlog and worker limits, or spread load over more proxies"),
    ),
    27: Explanation(
        "The proxy accepted the connection but did not answer in time (anti-captcha asks for about 1 s).",
        ("the proxy is overloaded or its upstream is slow", "a SOCKS5 proxy that never answers the handshake",
         "a rotating gateway whose exit node is dead"),
        ("measure latency with `proxycheck check`; retire proxies slower than ~1 s",
         "squid: check `cache_log` for upstream errors; dante: `timeout.negotiate`",
         "rotating gateways: ask the provider for a sticky session or another exit"),
    ),
    28: Explanation(
        "A ban target treats the proxy's exit IP as banned: 429, a redirect to /sorry/, an \"unusual traffic\" "
        "page, a Cloudflare challenge, or the target's own rules. Bans are per target ([[targets.ban]]: one per "
        "captcha provider): `check --json` says which target bans it and why (`targets`), and the proxy is "
        "still handed out for the others (`usable_for`; `get_healthy_proxy(target=\"hcaptcha\")`).",
        ("the exit IP sent too much automated traffic", "the IP belongs to a range the target blocks (data centre, abused subnet)"),
        ("rotate to another exit IP; residential or mobile exits are banned less",
         "lower the request rate through each proxy; bans usually expire after hours"),
    ),
    29: Explanation(
        "The proxy is transparent: it tells the target the client's real IP (X-Forwarded-For, Forwarded, "
        "Via, X-Real-IP, ...), so the solver's server would be exposed. anti-captcha refuses such proxies.",
        ("squid's default `forwarded_for on`", "tinyproxy with `XTinyproxy Yes`",
         "privoxy's `+change-x-forwarded-for{add}`", "a load balancer in front of the proxy adding X-Forwarded-For"),
        ("squid: `forwarded_for delete` and `via off` (and `request_header_access X-Forwarded-For deny all`)",
         "tinyproxy: remove `XTinyproxy Yes`, set `DisableViaHeader Yes`",
         "3proxy: use `proxy -a` (anonymous) instead of `proxy`", "dante and other SOCKS proxies do not add headers: look for an HTTP proxy behind them"),
    ),
    35: Explanation(
        "Images from Google's servers do not come through intact: the proxy blocks, replaces or truncates them, "
        "so the worker cannot see the captcha's pictures.",
        ("an ad/content filter blocking image/* (squid `http_reply_access deny`, privoxy `+block`/`+handle-as-image`)",
         "a size limit (`reply_body_max_size`)", "a \"bandwidth saver\" that recompresses images"),
        ("squid: remove `http_reply_access deny` rules on `rep_mime_type image/`; raise `reply_body_max_size`",
         "privoxy: disable image blocking actions for google.com and gstatic.com",
         "providers: disable traffic-saving / image blocking options on the plan"),
    ),
    36: Explanation(
        "The proxy cannot carry what captcha pages need: no CONNECT/SSL tunnel (or a certificate substituted "
        "inside it), or it rejects long (~2,000-byte) GET requests.",
        ("squid's `http_access deny CONNECT !SSL_ports` or a CONNECT deny rule",
         "tinyproxy `ConnectPort` lines that exclude 443", "TLS interception (squid `ssl_bump`, corporate middleboxes)",
         "a small request/URL limit (squid `request_header_max_size`, nginx `large_client_header_buffers`)"),
        ("squid: allow CONNECT to 443 (`http_access allow CONNECT SSL_ports`), do not `ssl_bump` google.com",
         "tinyproxy: `ConnectPort 443`", "raise request limits to at least 8 KB (squid `request_header_max_size 64 KB`)"),
    ),
    49: Explanation(
        "The proxy rejected the login/password (HTTP 407, SOCKS5 authentication failure, or a SOCKS4 user id it refuses).",
        ("wrong or expired credentials", "the provider expects IP allow-listing instead of a password",
         "special characters in the password not percent-encoded in the URL"),
        ("check the credentials with `curl -x http://USER:PASS@HOST:PORT http://example.com`",
         "percent-encode @ : / in URLs (proxycheck decodes them); in CSV files put them raw in the login/password columns",
         "squid: `auth_param basic` + `http_access allow` for the auth ACL; dante: `socksmethod: username`"),
    ),
}


def render(code: int) -> str:
    e = EXPLANATIONS[code]
    reasons = [f"  {name:<20} {r.summary}" for name, r in REASONS.items() if r.code == code]
    lines = [f"{code} {ERROR_NAMES[code]}", "", e.meaning, "", "What proxycheck saw (the reason field):", *reasons,
             "", "Likely causes:", *(f"  - {c}" for c in e.causes), "", "How to fix:", *(f"  - {f}" for f in e.fixes)]
    return "\n".join(lines)
