"""The checker's self-test under its old name: ``selftest.py`` holds it (kept for imports)."""

from .selftest import CheckerStatus, local_source_ips, parse_ip_echo, preflight

__all__ = ["CheckerStatus", "local_source_ips", "parse_ip_echo", "preflight"]
