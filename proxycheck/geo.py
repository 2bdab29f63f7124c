"""Where an exit is: country and autonomous system from offline MaxMind-format databases ([geo]).

Rules:
1. Nothing is downloaded: ``[geo].database`` and ``[geo].asn_database`` are ``.mmdb`` files the
   user keeps fresh (README). They are read with ``maxminddb`` in ``MODE_MEMORY``: the file is
   read whole when opened, so a refresh that rewrites it in place cannot fault the daemon under
   a memory map (a mapped file truncated under its reader is SIGBUS).
2. The record's fields decide what a file holds, not its name (``_country``, ``_asn``), so the
   layouts the free vendors ship all work: MaxMind GeoLite2 and DB-IP Lite (country in one file,
   ``country.iso_code``; ASN in another, ``autonomous_system_number`` and
   ``autonomous_system_organization``) and IPinfo Lite (one file: ``country_code``, ``asn``
   ``"AS3320"``, ``as_name``; IPinfo's older country_asn file: ``country``). With only
   ``database``, ASN fields are read from it too.
3. A file that cannot be opened when the settings are loaded is a ``ConfigError`` naming the key
   (``check_settings``). At run time each file is re-read when its size or modification time
   changes (looked at no more than every ``RECHECK`` seconds); if it is then missing or not a
   database, the copy read before stays in use and ``problem`` says so (the daemon logs it and
   shows it as a note). Never a traceback, and never a proxy blamed.
4. ``ExitGeo`` is the answer for one IP; an IP the database does not know is all None (not a
   mismatch: unknown). ``mismatch(tags, geo)`` is pure: a proxy tagged ``country:XX``
   (case-insensitive ISO 3166-1 alpha-2; several tags: any of them) whose exit is known to be
   elsewhere gets the sentence ``tagged US, exits in DE, AS3320 Deutsche Telekom AG``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import maxminddb

from .errors import ConfigError

log = logging.getLogger(__name__)

COUNTRY_TAG = "country:"
RECHECK = 60.0  # seconds between looks at a database file's size and modification time (rule 3)


@dataclass(frozen=True)
class ExitGeo:
    """Where one exit IP is, as the databases say; None where they do not know."""

    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    asn: int | None = None
    as_org: str | None = None

    @property
    def known(self) -> bool:
        return self.country is not None or self.asn is not None

    def describe(self) -> str:
        """``DE, AS3320 Deutsche Telekom AG``; ``unknown`` when the databases do not know it."""
        parts = [self.country or "an unknown country"]
        if self.asn is not None:
            parts.append(f"AS{self.asn}" + (f" {self.as_org}" if self.as_org else ""))
        return ", ".join(parts) if self.known else "unknown"

    def as_dict(self) -> dict[str, Any]:
        return {"exit_country": self.country, "exit_asn": self.asn, "exit_as_org": self.as_org}


UNKNOWN = ExitGeo()


def country_code(text: str) -> str | None:
    """``"us"`` -> ``"US"``; None when ``text`` is not two ASCII letters."""
    text = text.strip()
    return text.upper() if len(text) == 2 and text.isascii() and text.isalpha() else None


def tagged_countries(tags: Iterable[str]) -> frozenset[str]:
    """The countries a proxy's ``country:xx`` tags claim (rule 4); other tags are not claims."""
    found = set()
    for tag in tags:
        if tag[: len(COUNTRY_TAG)].lower() == COUNTRY_TAG and (code := country_code(tag[len(COUNTRY_TAG):])):
            found.add(code)
    return frozenset(found)


def names_a_country(tags: Iterable[str]) -> bool:
    """A worker's ``tags`` filter holds a ``country:xx`` tag (eligibility.py: geo_mismatch)."""
    return bool(tagged_countries(tags))


def mismatch(tags: Iterable[str], geo: ExitGeo | None) -> str | None:
    """Rule 4: the ``geo_mismatch`` sentence, or None (no claim, no known country, or a match)."""
    claimed = tagged_countries(tags)
    if not claimed or geo is None or geo.country is None or geo.country in claimed:
        return None
    return f"tagged {' or '.join(sorted(claimed))}, exits in {geo.describe()}"


def _country(record: dict[str, Any]) -> str | None:
    value = record.get("country")
    if isinstance(value, dict):  # GeoLite2, DB-IP: {"country": {"iso_code": "DE", ...}}
        value = value.get("iso_code")
    elif "country_code" in record:  # IPinfo Lite: "country" is the name
        value = record.get("country_code")
    return country_code(value) if isinstance(value, str) else None


def _asn(record: dict[str, Any]) -> tuple[int | None, str | None]:
    number, org = record.get("autonomous_system_number"), record.get("autonomous_system_organization")
    if number is None and isinstance(record.get("asn"), str):  # IPinfo: "AS3320"
        text = record["asn"].strip().upper().removeprefix("AS")
        number, org = (int(text) if text.isascii() and text.isdecimal() else None), record.get("as_name")
    if isinstance(number, bool) or not isinstance(number, int):
        return None, None
    return number, org if isinstance(org, str) and org else None


class _File:
    """One ``.mmdb`` file, re-read when it changes (rule 3)."""

    def __init__(self, path: str, key: str) -> None:
        self.path, self.key = path, key
        self.problem: str | None = None
        self._stamp = self._stat()
        self._reader = open_database(path, key)
        self._looked = time.monotonic()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def get(self, ip: str) -> dict[str, Any] | None:
        self.refresh()
        try:
            record = self._reader.get(ip)
        except ValueError:  # an IPv6 exit in an IPv4-only database
            return None
        return record if isinstance(record, dict) else None

    def refresh(self) -> None:
        if time.monotonic() - self._looked < RECHECK:
            return
        self._looked = time.monotonic()
        stamp = self._stat()
        if stamp == self._stamp and self.problem is None:
            return
        try:
            reader = open_database(self.path, self.key)
        except ConfigError as exc:
            if self.problem is None:
                log.warning("geo database changed and cannot be read, still using the copy read before: %s", exc)
            self.problem = f"{exc}; using the copy read before"
            return
        old, self._reader, self._stamp, self.problem = self._reader, reader, stamp, None
        old.close()
        log.info("geo database %s re-read (%s)", self.path, reader.metadata().database_type)


def open_database(path: str, key: str) -> maxminddb.Reader:
    """``path`` read into memory (rule 1), or a ``ConfigError`` naming ``key``."""
    try:
        return maxminddb.open_database(path, maxminddb.MODE_MEMORY)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist (download one: docs/geo.md says where)") from None
    except IsADirectoryError:
        raise ConfigError(f"{key}: {path} is a directory, not a .mmdb file") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise ConfigError(f"{key}: {path} is not a MaxMind DB (.mmdb) file: {exc}") from None


class GeoLookup:
    """``[geo]`` opened: ``lookup(ip)`` gives an ``ExitGeo``. Thread-safe (the checker may ask
    from several threads of one process)."""

    def __init__(self, database: str, asn_database: str = "", *, where: str = "[geo]") -> None:
        self._country = _File(database, f"{where}.database")
        self._asn = _File(asn_database, f"{where}.asn_database") if asn_database else None
        self._lock = threading.Lock()

    @property
    def problem(self) -> str | None:
        """Why a changed file could not be re-read (rule 3), or None."""
        return next((f.problem for f in (self._country, self._asn) if f is not None and f.problem), None)

    def recheck(self) -> str | None:
        """Look at the files now (at most every ``RECHECK`` seconds, as lookups do): ``problem``."""
        with self._lock:
            for f in (self._country, self._asn):
                if f is not None:
                    f.refresh()
        return self.problem

    def lookup(self, ip: str | None) -> ExitGeo:
        if not ip:
            return UNKNOWN
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return UNKNOWN
        with self._lock:
            record = self._country.get(ip) or {}
            asn_record = (self._asn.get(ip) or {}) if self._asn is not None else record
        number, org = _asn(asn_record)
        return ExitGeo(_country(record), number, org)


def from_settings(geo: Any, where: str = "[geo]") -> GeoLookup | None:
    """The lookup for a ``[geo]`` section, or None when no database is set."""
    if not geo.database:
        return None
    return GeoLookup(geo.database, geo.asn_database, where=where)


def check_settings(geo: Any, where: str) -> None:
    """The loader's check (rule 3): both files open now, else a ``ConfigError`` naming the key."""
    if not geo.database and geo.asn_database:
        raise ConfigError(f"{where}.asn_database: set [geo].database too (the country database); "
                          "asn_database alone gives no country to compare tags with")
    for name in ("database", "asn_database"):
        path = getattr(geo, name)
        if path:
            open_database(path, f"{where}.{name}").close()


__all__ = ["COUNTRY_TAG", "ExitGeo", "GeoLookup", "UNKNOWN", "check_settings", "country_code", "from_settings",
           "mismatch", "names_a_country", "tagged_countries"]
