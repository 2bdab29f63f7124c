"""Exceptions for *our* faults: bad input, bad config, storage trouble, misuse.

A proxy misbehaving is never an exception (see ``verdict.py``). The tree::

    ProxycheckError                 base; ``str()`` is one sentence a user can act on
    ├── ConfigError                 a config file or key is wrong (names the key)
    ├── ProxyParseError             a proxy URL or CSV field is wrong (names the field)
    │   └── CsvRowError             ...with the file and line it came from
    ├── SourceAddressUnavailable    a vantage's source address cannot be sent from (vantage.py)
    ├── StorageError                the database is unreachable, locked or not migrated
    │   └── SchemaOutOfDate         the schema is not at the latest migration
    ├── NoHealthyProxy (LookupError) no proxy qualifies for a worker's request
    └── GuardTripped (LookupError)   a captcha service's error budget is spent (guard.py)
"""

from __future__ import annotations


class ProxycheckError(Exception):
    """Base class for errors proxycheck reports to its user."""


class ConfigError(ProxycheckError):
    """The configuration is wrong; the message names the file and key."""


class ProxyParseError(ProxycheckError, ValueError):
    """A proxy description is wrong; ``field`` names the part (``port``, ``type``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CsvRowError(ProxyParseError):
    """A CSV row is wrong: ``file:line: field: what is wrong``."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        ProxycheckError.__init__(self, f"{file}:{line}: {field}: {message}")
        self.file = file
        self.line = line
        self.field = field
        self.message = message


class SourceAddressUnavailable(ProxycheckError):
    """``[check].source_address`` (or a ``[check].vantages`` address) cannot be bound: our trouble,
    never the proxy's (a probe that meets it ends as ``internal_error``, which changes no state)."""


class StorageError(ProxycheckError):
    """The database cannot be used; the message says what to run."""


class SchemaOutOfDate(StorageError):
    """The schema is behind the code's migrations."""


class NoHealthyProxy(ProxycheckError, LookupError):
    """No proxy qualifies; the message says why (counts by state and code, staleness)."""


class GuardTripped(ProxycheckError, LookupError):
    """A captcha service's error budget is spent (guard.py rule 4): no proxy is handed out for it
    until ``resumes_at``. The message names the errors, proxies and subnets that spent it."""

    def __init__(self, message: str, *, service: str, resumes_at: object = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.resumes_at = resumes_at
        self.details = details or {}
