"""Reading proxies from CSV files and command-line URLs.

The CSV format (``proxies.example.csv`` documents it) mirrors anti-captcha's task fields:
``type,address,port,login,password`` plus optional ``tags`` (comma or semicolon separated) and
``label``; a ``url`` column may replace the five fields. Lines starting with ``#`` and blank
lines are ignored. A bad row becomes a ``CsvRowError`` (``file:line: field: what is wrong``) and
the other rows are still returned: the caller decides whether one bad row is fatal (``--strict``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CsvRowError, ProxycheckError, ProxyParseError
from .proxy import Proxy, parse_host, parse_port, parse_proxy_url, parse_scheme, parse_tags

FIELD_COLUMNS = ("type", "address", "port", "login", "password")
OPTIONAL_COLUMNS = ("tags", "label")
KNOWN_COLUMNS = frozenset(FIELD_COLUMNS + OPTIONAL_COLUMNS + ("url",))


@dataclass
class LoadedProxies:
    proxies: list[Proxy] = field(default_factory=list)
    errors: list[CsvRowError] = field(default_factory=list)

    def extend(self, other: LoadedProxies) -> None:
        self.proxies.extend(other.proxies)
        self.errors.extend(other.errors)

    def deduplicated(self, *, by_identity: bool = True) -> list[Proxy]:
        """Proxies in input order without repeats, the last row winning for a repeated proxy.

        ``by_identity``: one proxy per ``Proxy.key`` (what storage keeps: a new password updates
        the proxy). Without it only exact repeats collapse, so ``check`` can try one proxy with
        two passwords side by side.
        """
        ident = (lambda p: p.key) if by_identity else (lambda p: p.url)
        last = {ident(p): p for p in self.proxies}
        seen: dict[str, Proxy] = {}
        for p in self.proxies:
            seen.setdefault(ident(p), last[ident(p)])
        return list(seen.values())


def read_csv_file(path: str | Path) -> LoadedProxies:
    """Read one CSV file. An unreadable file raises ``ProxycheckError``; bad rows are collected."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ProxycheckError(f"cannot read proxy file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProxycheckError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return read_csv_text(text, str(path))


def read_csv_text(text: str, name: str) -> LoadedProxies:
    result = LoadedProxies()
    lines = [(n, line) for n, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return result
    header_line, header_text = lines[0]
    header = [h.strip().lower() for h in next(csv.reader([header_text]))]
    unknown = [h for h in header if h not in KNOWN_COLUMNS]
    if unknown:
        raise ProxycheckError(
            f"{name}:{header_line}: unknown column {unknown[0]!r} "
            f"(known: {', '.join(sorted(KNOWN_COLUMNS))})"
        )
    if "url" not in header and not {"type", "address", "port"} <= set(header):
        raise ProxycheckError(f"{name}:{header_line}: the header needs either 'url' or 'type,address,port'")
    for line_no, line in lines[1:]:
        values = next(csv.reader(io.StringIO(line)), [])
        try:
            result.proxies.append(_row_to_proxy(header, values))
        except ProxyParseError as exc:
            result.errors.append(CsvRowError(name, line_no, exc.field, exc.message))
    return result


def _row_to_proxy(header: list[str], values: list[str]) -> Proxy:
    if len(values) > len(header):
        raise ProxyParseError("row", f"{len(values)} fields but the header has {len(header)}")
    row = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
    tags = parse_tags(row.get("tags"))
    label = row.get("label") or None
    if row.get("url"):
        return parse_proxy_url(row["url"], tags=tags, label=label)
    if not row.get("type"):
        raise ProxyParseError("type", "is empty")
    if not row.get("address"):
        raise ProxyParseError("address", "is empty")
    scheme = parse_scheme(row["type"])
    host = parse_host(row["address"])
    port = parse_port(row.get("port", ""))
    login = row.get("login") or None
    password = row.get("password") or None
    if password and not login:
        raise ProxyParseError("login", "a password was given without a login")
    return Proxy(scheme, host, port, login, password, tags, label)


def load_inputs(urls: list[str], files: list[str | Path]) -> LoadedProxies:
    """URLs from the command line (an error there is fatal) plus CSV files (bad rows collected)."""
    result = LoadedProxies()
    for text in urls:
        try:
            result.proxies.append(parse_proxy_url(text))
        except ProxyParseError as exc:
            raise ProxyParseError(exc.field, f"{exc.message} (in argument {_argument_label(text)})") from None
    for path in files:
        result.extend(read_csv_file(path))
    return result


def _argument_label(text: str) -> str:
    from .proxy import _mask_in_text

    return repr(_mask_in_text(text))
