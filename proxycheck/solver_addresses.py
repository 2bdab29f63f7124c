"""Where each captcha service connects to your proxies from: the addresses it publishes for
providers' allow-lists, each with its public source and the date we read it.

Rules:
1. One table, ``SERVICES``, keyed by the service's name as ``[guard.<service>]`` and reports
   spell it (guard.py rule 1); ``ALIASES`` maps other spellings users type. ``[solver].services``
   names entries here, and an ``ip_locked`` verdict lists their addresses (vantage.py).
2. Every address carries where it was published and when we read it. A service that publishes
   none says so (``addresses == ()``) and its ``note`` says what to do instead; stale or
   conflicting copies are kept with a note, never silently picked between.
3. These are facts about third parties and they change: re-read the sources before relying on
   one, and update the row with the new date.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One allow-list address as a service published it."""

    address: str
    source: str  # public URL
    read: str  # ISO date we read it
    note: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    addresses: tuple[Published, ...]
    note: str = ""  # what the service says about its source address, when it lists none (or more)

    def allow_list(self) -> str:
        """``capmonster: 65.21.190.34, 116.203.55.208`` or the note when nothing is published."""
        if not self.addresses:
            return f"{self.name}: {self.note}"
        return f"{self.name}: " + ", ".join(p.address for p in self.addresses)


_CAPSOLVER = "https://docs.capsolver.com/guide/api-how-to-use-proxy"
_CAPMONSTER_ERRORS = "https://docs.capmonster.cloud/docs/api/api-errors"

SERVICES: dict[str, Service] = {
    "anti-captcha": Service(
        "anti-captcha",
        (),
        note="publishes no address (\"Your proxy is accessed only from one IP address\", "
             "https://anti-captcha.com/apidoc/task-types/RecaptchaV2Task, read 2026-12-06); the addresses "
             "69.65.41.21 and 209.212.146.168 of 2017 (python-anticaptcha README, commit de53537) are likely "
             "stale: ask its support for the current one",
    ),
    "capmonster": Service(
        "capmonster",
        (
            Published("65.21.190.34", _CAPMONSTER_ERRORS, "2026-12-06",
                      "ZennoLab/capmonstercloud-docs, commit d76d99f of 2026-03-30"),
            Published("116.203.55.208", "https://docs.capmonster.cloud (its task pages)", "2026-12-06",
                      "task pages: \"If the proxy is authorized by IP, then be sure to add 116.203.55.208 to the "
                      "white list\"; the copy read may be older than the live site"),
        ),
        note="two addresses in two places of its docs: allow both",
    ),
    "capsolver": Service(
        "capsolver",
        tuple(Published(ip, _CAPSOLVER, "2026-12-06") for ip in (
            "47.253.53.46", "47.253.81.245", "47.253.148.135", "47.252.73.71", "47.253.123.100",
            "47.253.144.89", "47.89.153.185", "47.253.44.80", "47.253.210.178",
        )),
    ),
    "2captcha": Service(
        "2captcha",
        (),
        note="no allow-list address found in its API docs (https://2captcha.com/api-docs, read 2026-12-06): "
             "use login/password proxies",
    ),
}

ALIASES: dict[str, str] = {"anticaptcha": "anti-captcha", "capmonster-cloud": "capmonster", "capmonstercloud": "capmonster",
                           "twocaptcha": "2captcha"}


def canonical(name: str) -> str | None:
    """A service name as the table keys it, or None for one we have no row for."""
    text = name.strip().lower()
    text = ALIASES.get(text, text)
    return text if text in SERVICES else None


def check_service(value: str) -> str | None:
    """For ``[solver].services``: None when known, else what is wrong (config_keys' contract)."""
    if canonical(value) is None:
        return f"{value!r} is not a service we know the addresses of (known: {', '.join(SERVICES)})"
    return None


def allow_lists(services: tuple[str, ...]) -> list[str]:
    """Each named service's allow-list line, in the order given."""
    return [SERVICES[c].allow_list() for s in services if (c := canonical(s)) is not None]
