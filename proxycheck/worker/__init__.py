"""The worker API: what worker code calls on every captcha task.

    from proxycheck import get_healthy_proxy, report, NoHealthyProxy

    proxy = get_healthy_proxy(tags={"us"}, strategy="least_used")
    task = {"type": "RecaptchaV2Task", ..., **proxy.as_anticaptcha()}
    report(proxy, create_task(task))      # the service's JSON, an errorId or an errorCode

Rules:
1. What is handed out is ``Eligibility``'s rule (store/eligibility.py, stated once there: healthy
   now, fresh within ``[worker].max_age``, the target and sticky filters, and for leases their
   limits). Stale proxies are never handed out, so workers stop getting proxies when the daemon
   stops checking. Every function takes the filters as one ``Filters`` or as its keywords
   (``FilterKeywords``, params.py); bad values are a ``ValueError`` naming the parameter.
2. The database is found as the daemon finds it (``--config``-less: ``$PROXYCHECK_CONFIG``, then
   ``./proxycheck.toml``; ``$PROXYCHECK_DATABASE_URL`` wins), opened lazily, once per process, or
   set with ``configure()``; finding nothing is ``NoConfiguration`` saying what to set. Safe with
   threads and forked processes (pool.py). ``http_token()`` finds the HTTP endpoint's token the
   same way (``$PROXYCHECK_TOKEN``, ``[http].token``, ``<state_dir>/http-token``).
3. Strategies: ``random`` (default), ``fastest`` (lowest latency at the last check), and
   ``least_used`` / ``round_robin``, which count hand-outs in the database so they hold across
   every worker process. ``get_healthy_proxies()`` lists without counting.
4. Module-level functions use one default ``ProxyPool`` per process; the async twins run the
   same calls in a thread.
5. ``lease()`` / ``acquire()`` / ``release()`` (leasing.py) hold a proxy for a solve, within
   ``[worker].max_concurrent_per_proxy`` and ``cooldown_seconds`` across every process.
   ``get_healthy_proxy()`` does not look at leases: it holds nothing, so it is not limited.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Unpack

from ..feedback import ReportResult
from ..proxy import Proxy
from ..store.eligibility import Filters
from ..store.reports import FeedbackSummary
from .leasing import aacquire, acquire, alease, arelease, held_leases, lease, release
from .params import FilterKeywords, filters_from_query, make_filters, proxy_from_reference
from .pool import ProxyPool
from .settings import STRATEGIES, NoConfiguration, WorkerSettings, http_token

_default: ProxyPool | None = None
_default_lock = threading.Lock()


def configure(
    database_url: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    settings: WorkerSettings | None = None,
) -> ProxyPool:
    """Point this process's worker API at a database and/or config file explicitly (instead of
    ``$PROXYCHECK_DATABASE_URL`` / ``$PROXYCHECK_CONFIG`` / ``./proxycheck.toml``). Replaces the
    default pool, closing the old one's connections."""
    global _default
    with _default_lock:
        old, _default = _default, ProxyPool(database_url, config=config, settings=settings)
    if old is not None:
        old.close()
    return _default


def default_pool() -> ProxyPool:
    """This process's default pool (created on first use, configured from the environment)."""
    global _default
    pool = _default
    if pool is None:
        with _default_lock:
            if _default is None:
                _default = ProxyPool()
            pool = _default
    return pool


def get_healthy_proxy(filters: Filters | None = None, *, strategy: str | None = None,
                      **keywords: Unpack[FilterKeywords]) -> Proxy:
    """A healthy, fresh proxy. ``tags``: all must match; ``scheme``: one or several, exact;
    ``anonymity``: minimum level (``anonymous`` or ``elite``); ``exclude``: proxies (or their
    URLs/keys) this task already tried; ``strategy``: ``random`` (default), ``round_robin``,
    ``least_used`` or ``fastest``; ``target``: a ban target's name (``[[targets.ban]]``): a proxy
    fine there, even if other targets ban it; ``sticky``: only proxies whose exit IP was seen
    stable for ``[probes].sticky_seconds``; ``service``: the captcha service the proxy is for;
    ``country`` (``"US"``, any case) and ``asn`` (``3320``, or ``"AS3320"``): where the exit was
    observed to be ([geo]); a ``country:xx`` tag never selects a proxy whose exit contradicts it
    (``geo_mismatch``, docs/geo.md). The filters may come as one ``Filters`` instead. Raises ``NoHealthyProxy`` (a ``LookupError``)
    saying why, ``GuardTripped`` (a ``LookupError``) when ``service``'s error budget is spent
    (docs/guard.md), ``ValueError`` naming a bad argument."""
    return default_pool().get(filters, strategy=strategy, **keywords)


def get_healthy_proxies(filters: Filters | None = None, *, strategy: str | None = None, limit: int | None = None,
                        **keywords: Unpack[FilterKeywords]) -> list[Proxy]:
    """Every healthy, fresh proxy matching the filters, fastest first (or in ``strategy``'s
    order, without counting hand-outs), at most ``limit``. An empty list when none qualifies.
    Filters as for ``get_healthy_proxy``."""
    return default_pool().get_all(filters, strategy=strategy, limit=limit, **keywords)


async def aget_healthy_proxy(**filters: Any) -> Proxy:
    """``get_healthy_proxy`` for asyncio workers (the database call runs in a thread)."""
    return await asyncio.to_thread(get_healthy_proxy, **filters)


async def aget_healthy_proxies(**filters: Any) -> list[Proxy]:
    """``get_healthy_proxies`` for asyncio workers (the database call runs in a thread)."""
    return await asyncio.to_thread(get_healthy_proxies, **filters)


def report(proxy: Proxy | str, outcome: Any, *, worker: str | None = None, service: str | None = None) -> ReportResult:
    """Tell proxycheck what the captcha service said about ``proxy`` (a ``Proxy`` from
    ``get_healthy_proxy()``, or its URL/key). ``outcome``: the service's JSON response, an
    ``errorId`` or an ``errorCode`` (``proxycheck.feedback`` says what each means). ``worker``
    names the reporter (default ``host:pid``); ``service`` the captcha service (``anti-captcha``,
    ``capmonster``, ``2captcha``, ...): its proxy errors spend that service's error budget
    (docs/guard.md). Raises ``ValueError`` for anything else."""
    return default_pool().report(proxy, outcome, worker=worker, service=service)


async def areport(proxy: Proxy | str, outcome: Any, *, worker: str | None = None,
                  service: str | None = None) -> ReportResult:
    """``report`` for asyncio workers (the database call runs in a thread)."""
    return await asyncio.to_thread(report, proxy, outcome, worker=worker, service=service)


def feedback_summary() -> FeedbackSummary:
    """Worker reports in the guard rail's window, for this process's database."""
    return default_pool().feedback_summary()


def _reset_lock_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)

__all__ = [
    "STRATEGIES",
    "FilterKeywords",
    "Filters",
    "NoConfiguration",
    "aacquire",
    "acquire",
    "alease",
    "arelease",
    "held_leases",
    "lease",
    "release",
    "ProxyPool",
    "WorkerSettings",
    "aget_healthy_proxies",
    "aget_healthy_proxy",
    "areport",
    "configure",
    "default_pool",
    "feedback_summary",
    "filters_from_query",
    "get_healthy_proxies",
    "get_healthy_proxy",
    "http_token",
    "make_filters",
    "proxy_from_reference",
    "report",
]
