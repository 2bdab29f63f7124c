r"""Reading proxies from CSV files and command-line URLs.

The CSV format (``proxies.example.csv`` documents it) mirrors anti-captcha's task fields:
``type,address,port,login,password`` plus optional ``tags`` (comma or semicolon separated) and
``label``; a ``url`` column may replace the five fields, and a file whose first row is a proxy
URL has no header: one URL per line. Lines starting with ``#`` and blank lines are ignored.

Rules:
1. One bad row costs one row. A row the field rules (``fields.py``) refuse, a line over
   ``MAX_ROW`` characters, bytes that are not UTF-8 or cells that are not CSV become a
   ``CsvRowError`` (``file:line: field: what is wrong``) and the other rows are still returned:
   the caller decides whether one bad row is fatal (``--strict``).
2. Only the file as a whole can fail (``ProxycheckError``): unreadable, UTF-16, or a header
   that names no usable columns. Nothing else raises.
3. Line ends are ``\n``, ``\r\n`` or a lone ``\r``; a UTF-8 BOM is ignored.
4. Callers show at most ``SHOWN_ERRORS`` row errors per file (``error_lines``): a file of
   garbage must not print one line per row.
5. A proxy URL under a header of columns (the installed ``type,address,...`` header) is named
   as such, with where URL lines go (a ``url`` header, or no header), not as an empty field.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CsvRowError, ProxycheckError, ProxyParseError
from .fields import check_text, parse_label, parse_tags, shown
from .masking import mask_argument
from .proxy import Proxy, make_proxy, parse_proxy_url

FIELD_COLUMNS = ("type", "address", "port", "login", "password")
OPTIONAL_COLUMNS = ("tags", "label")
KNOWN_COLUMNS = frozenset(FIELD_COLUMNS + OPTIONAL_COLUMNS + ("url",))
MAX_ROW = 4096  # characters in one line: seven fields of at most 255, with room to spare
SHOWN_ERRORS = 20  # row errors shown per file; the rest are counted
_LINE_END = re.compile(r"\r\n|\r|\n")


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

    def error_lines(self, limit: int = SHOWN_ERRORS, note: str = "") -> list[str]:
        """The first ``limit`` row errors of each file (each followed by ``note``), then one
        line per file counting the rest."""
        per_file: Counter[str] = Counter()
        lines = []
        for err in self.errors:
            per_file[err.file] += 1
            if per_file[err.file] <= limit:
                lines.append(f"{err}{note}")
        for name, count in per_file.items():
            if count > limit:
                lines.append(f"… and {count - limit} more bad rows in {name}{note}")
        return lines


def read_csv_file(path: str | Path) -> LoadedProxies:
    """Read one CSV file. An unreadable file raises ``ProxycheckError``; bad rows are collected."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProxycheckError(f"cannot read proxy file {path}: {exc.strerror or exc}") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ProxycheckError(f"{path}: UTF-16 text; save it as UTF-8 (CSV UTF-8 in a spreadsheet)")
    # Bytes that are not UTF-8 become lone surrogates, which fields.check_text refuses per row.
    return read_csv_text(data.decode("utf-8", errors="surrogateescape"), str(path))


def read_csv_text(text: str, name: str) -> LoadedProxies:
    """Rows of ``text`` as proxies and row errors; only a bad header raises ``ProxycheckError``."""
    result = LoadedProxies()
    header: list[str] | None = None
    for line_no, line in enumerate(_LINE_END.split(text.removeprefix("\ufeff")), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if header is None:
            if "://" not in line.split(",", 1)[0]:
                header = _header(line, f"{name}:{line_no}")
                continue
            header = ["url"]  # no header: URL lines (module docstring)
        try:
            result.proxies.append(_row_to_proxy(header, _cells(line)))
        except ProxyParseError as exc:
            result.errors.append(CsvRowError(name, line_no, exc.field, exc.message))
    return result


def _cells(line: str) -> list[str]:
    if len(line) > MAX_ROW:
        raise ProxyParseError("row", f"is {len(line)} characters long; the limit is {MAX_ROW}")
    try:
        return next(csv.reader([line], strict=True), [])  # an unclosed quote cut a cell short
    except csv.Error as exc:
        raise ProxyParseError("row", f"is not valid CSV ({exc})") from None


def _header(line: str, where: str) -> list[str]:
    try:
        header = [h.strip().lower() for h in _cells(line)]
        for h in header:
            check_text("column", h, limit=20)
    except ProxyParseError as exc:
        raise ProxycheckError(f"{where}: a {exc.field} name in the header {exc.message}") from None
    unknown = [h for h in header if h not in KNOWN_COLUMNS]
    if unknown:
        raise ProxycheckError(f"{where}: unknown column {shown(unknown[0])} (known: {', '.join(sorted(KNOWN_COLUMNS))})")
    repeated = [h for h in header if header.count(h) > 1]
    if repeated:
        raise ProxycheckError(f"{where}: column {repeated[0]!r} appears twice")
    if "url" not in header and not {"type", "address", "port"} <= set(header):
        raise ProxycheckError(f"{where}: the header needs either 'url' or 'type,address,port'")
    return header


def _row_to_proxy(header: list[str], values: list[str]) -> Proxy:
    if len(values) > len(header):
        raise ProxyParseError("row", f"{len(values)} fields but the header has {len(header)}")
    row = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
    if "url" not in row and "://" in (values[0] if values else ""):  # rule 5
        raise ProxyParseError("row", f"is a proxy URL, but the header names columns ({','.join(header)}); "
                                     "URL lines go under a header `url`, or in a file with no header")
    if "url" in row and not row.get("type"):
        return parse_proxy_url(row["url"], tags=parse_tags(row.get("tags")), label=parse_label(row.get("label")))
    for column in ("type", "address"):
        if not row.get(column):
            raise ProxyParseError(column, "is empty")
    return make_proxy(*(row.get(c, "") for c in FIELD_COLUMNS + OPTIONAL_COLUMNS))


def load_inputs(urls: list[str], files: list[str | Path]) -> LoadedProxies:
    """URLs from the command line plus CSV files (bad rows collected).

    A bad URL argument is fatal (the user typed it; nothing is half-done), and every bad one is
    named at once: ``argument 'http://alice:***@[::1': address: ...``, one line each."""
    result = LoadedProxies()
    bad = []
    for text in urls:
        try:
            result.proxies.append(parse_proxy_url(text))
        except ProxyParseError as exc:
            bad.append(f"argument {shown(mask_argument(text), 80)}: {exc}")
    if bad:
        more = [f"… and {len(bad) - SHOWN_ERRORS} more bad arguments"] if len(bad) > SHOWN_ERRORS else []
        raise ProxycheckError("\n".join(bad[:SHOWN_ERRORS] + more))
    for path in files:
        result.extend(read_csv_file(path))
    return result


def import_arguments(args: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """``proxycheck import`` arguments as (URLs, CSV files), so a mistyped path is not a proxy.

    A URL has ``://``, or ``:`` / ``@`` (``host:port``, ``login:password@host``); an existing file
    or a name ending in ``.csv`` is a CSV file. Anything else (``nofile``, a directory) is refused
    instead of being stored as ``http://nofile:8080``.
    """
    urls: list[str] = []
    files: list[str] = []
    for arg in args:
        path = Path(arg)
        if "://" in arg:
            urls.append(arg)
        elif path.is_dir():
            raise ProxycheckError(f"{arg} is a directory: give a CSV file or a proxy URL such as http://host:port")
        elif path.exists() or arg.lower().endswith(".csv"):
            files.append(arg)
        elif ":" in arg or "@" in arg:
            urls.append(arg)
        else:
            raise ProxycheckError(f"no such file {arg}; to import a proxy URL write http://host:port")
    return urls, files
