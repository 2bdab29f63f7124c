"""Check-out leases, the worker's side: hold a proxy for the length of a solve.

    with proxycheck.lease(ttl=180, target="hcaptcha", tags={"us"}) as proxy:
        solve(task, **proxy.as_anticaptcha())

Rules:
1. ``lease()`` takes every filter of ``get_healthy_proxy()`` (one ``Filters`` or its keywords,
   ``FilterKeywords``, so filters added there work here), acquires a lease (store/worker_leases.py: limits hold
   across every worker process), hands out the ``Proxy`` and releases the lease when the block
   ends, however it ends.
2. An ``Exception`` leaving the block is reported (``report()``'s machinery) before the release:
   as the captcha service's proxy error when it carries one (``feedback.outcome_in``), else as
   a soft failure; then it propagates unchanged. Cancellation and ``KeyboardInterrupt`` are not
   the proxy's fault and are not reported. A failed report never hides the block's exception.
3. A lease the worker never releases (killed, hung) frees itself after ``ttl`` seconds.
4. The async twins run the same calls in a thread, like ``aget_healthy_proxy``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Unpack

from ..proxy import Proxy
from ..store.eligibility import Filters
from ..store.worker_leases import HeldLease, Lease, Released
from .params import FilterKeywords
from .pool import ProxyPool

log = logging.getLogger(__name__)


def _pool(pool: ProxyPool | None) -> ProxyPool:
    if pool is not None:
        return pool
    from . import default_pool  # the package's per-process default

    return default_pool()


def acquire(filters: Filters | None = None, *, ttl: float | None = None, worker: str | None = None,
            pool: ProxyPool | None = None, strategy: str | None = None, **keywords: Unpack[FilterKeywords]) -> Lease:
    """Lease a healthy, fresh proxy matching ``filters`` (``get_healthy_proxy()``'s: a ``Filters``
    or its keywords) for ``ttl`` seconds (default ``[worker].lease_ttl``). Release it with
    ``release(lease)``. Raises ``NoHealthyProxy`` saying why none could be leased (none healthy,
    or all leased/cooling)."""
    return _pool(pool).acquire(filters, ttl=ttl, worker=worker, strategy=strategy, **keywords)


def release(lease: Lease | str, outcome: Any = None, *, worker: str | None = None, service: str | None = None,
            pool: ProxyPool | None = None) -> Released:
    """End ``lease`` (a ``Lease`` or its id). With ``outcome`` (what ``service`` answered), the
    proxy is ``report()``-ed by the release that ends the lease, once. False (``Released`` is
    true or false like a bool) when the lease was unknown, had expired or had been released;
    ``.reported`` says whether a report was stored, ``.report`` is ``report()``'s answer."""
    return _pool(pool).release(lease, outcome, worker=worker, service=service)


def held_leases(*, pool: ProxyPool | None = None) -> list[HeldLease]:
    """The leases held now, across every worker process, oldest first."""
    return _pool(pool).held_leases()


def _service(filters: Filters | None, keywords: Any) -> str | None:
    """The service a lease is for: its exception is reported against that service's budget."""
    return filters.service if filters is not None else keywords.get("service")


def _report_failure(pool: ProxyPool, held: Lease, exc: BaseException, worker: str | None, service: str | None) -> None:
    try:
        pool.report_exception(held.proxy, exc, worker=worker, service=service)
    except Exception:  # noqa: BLE001 - rule 2: the block's own exception matters more
        log.warning("could not report the failure inside lease %s on %s", held.id, held.proxy.masked_url, exc_info=True)


@contextmanager
def lease(filters: Filters | None = None, *, ttl: float | None = None, worker: str | None = None,
          pool: ProxyPool | None = None, strategy: str | None = None, **keywords: Unpack[FilterKeywords]) -> Iterator[Proxy]:
    """``with lease(ttl=180, tags=...) as proxy:``: the proxy is held for the block (rules 1-3)."""
    p = _pool(pool)
    held = p.acquire(filters, ttl=ttl, worker=worker, strategy=strategy, **keywords)
    try:
        yield held.proxy
    except Exception as exc:
        _report_failure(p, held, exc, worker, _service(filters, keywords))
        raise
    finally:
        p.release(held)


async def aacquire(**kwargs: Any) -> Lease:
    """``acquire`` for asyncio workers."""
    return await asyncio.to_thread(acquire, **kwargs)


async def arelease(lease: Lease | str, outcome: Any = None, **kwargs: Any) -> Released:
    """``release`` for asyncio workers."""
    return await asyncio.to_thread(release, lease, outcome, **kwargs)


@asynccontextmanager
async def alease(filters: Filters | None = None, *, ttl: float | None = None, worker: str | None = None,
                 pool: ProxyPool | None = None, strategy: str | None = None,
                 **keywords: Unpack[FilterKeywords]) -> AsyncIterator[Proxy]:
    """``async with alease(...) as proxy:``: ``lease`` for asyncio workers. Cancelling the task
    inside the block releases the lease without reporting (rule 2)."""
    p = _pool(pool)
    held = await asyncio.to_thread(p.acquire, filters, ttl=ttl, worker=worker, strategy=strategy, **keywords)
    try:
        yield held.proxy
    except Exception as exc:
        await asyncio.to_thread(_report_failure, p, held, exc, worker, _service(filters, keywords))
        raise
    finally:
        await asyncio.shield(asyncio.to_thread(p.release, held))


__all__ = ["aacquire", "alease", "acquire", "arelease", "held_leases", "lease", "release"]
