"""A worker process's snapshot of eligible proxies, and picking from it.

Rules:
1. A snapshot is the list ``store.selection.HotReads.candidates`` returned, plus a set of ids found
   ineligible since (``discard``). It proposes; it never decides: the pool re-reads every
   proposed proxy by id (``HotReads.fetch``) before handing it out, and discards it here if that
   read says no. So a stale snapshot can only *miss* newly healthy proxies, never hand out an
   unhealthy one.
2. The candidates are what ``Eligibility`` without filters admitted when the snapshot was read.
   Its freshness term is re-checked in memory on every proposal (``last_success >= cutoff``,
   both in the driver's form), so a snapshot older than ``max_age`` proposes nothing stale.
   Target and sticky filters need columns a candidate does not carry: the pool asks the
   database for those (``Filters.needs_full_row``).
3. Filtered views (tags, schemes, anonymity: ``Filters.matches``, the rule's own test) are
   built once per snapshot and cached; ``exclude`` is per call and checked per proposal. Picking is O(1) expected: a few random probes, then one
   pass that also compacts the view when many entries have been discarded.
4. Thread-safe without locks: views and the discard set are only ever replaced or grown, under
   the GIL, and a snapshot is never reloaded in place (the pool swaps in a new one).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from ..store.selection import (
    C_ANONYMITY,
    C_ID,
    C_KEY,
    C_LAST_SUCCESS,
    C_LATENCY,
    C_SCHEME,
    C_TAGS,
    Candidate,
)
from ..store.eligibility import Filters

RANDOM_PROBES = 8  # random draws before one full pass over the view
MAX_VIEWS = 256  # filter combinations cached per snapshot (HTTP clients can send anything)


class Snapshot:
    def __init__(self, candidates: list[Candidate], taken_at: float, load_seconds: float) -> None:
        self.candidates = candidates
        self.taken_at = taken_at  # time.monotonic() when the read started
        self.load_seconds = load_seconds
        self.discarded: set[int] = set()
        self._views: dict[tuple[object, ...], list[Candidate]] = {}
        self._by_latency: dict[tuple[object, ...], list[Candidate]] = {}
        self._tag_sets: dict[str, frozenset[str]] = {}  # JSON text -> tags (fleets share a few)

    def discard(self, proxy_id: int) -> None:
        self.discarded.add(proxy_id)

    def view(self, filters: Filters) -> list[Candidate]:
        key = (filters.tags, filters.schemes, filters.min_anonymity)
        found = self._views.get(key)
        if found is None:
            if len(self._views) >= MAX_VIEWS:
                self._views = {}
                self._by_latency = {}
            if not filters.tags and filters.schemes is None and filters.min_anonymity is None:
                found = self.candidates
            else:
                found = [c for c in self.candidates if self.matches(c, filters)]
            self._views[key] = found
        return found

    def pick_random(self, filters: Filters, cutoff: Any, rng: random.Random) -> Candidate | None:
        view = self.view(filters)
        if not view:
            return None
        discarded, exclude = self.discarded, filters.exclude
        for _ in range(RANDOM_PROBES):
            c = view[rng.randrange(len(view))]
            if c[C_ID] not in discarded and c[C_LAST_SUCCESS] >= cutoff and c[C_KEY] not in exclude:
                return c
        live = [c for c in view if c[C_ID] not in discarded and c[C_LAST_SUCCESS] >= cutoff]
        if len(live) < len(view):  # compact: later calls stop drawing the dead ones
            self._views[(filters.tags, filters.schemes, filters.min_anonymity)] = live
        usable = [c for c in live if c[C_KEY] not in exclude] if exclude else live
        return rng.choice(usable) if usable else None

    def by_latency(self, filters: Filters, cutoff: Any) -> Iterator[Candidate]:
        """Usable candidates, lowest latency first (unknown latency last)."""
        key = (filters.tags, filters.schemes, filters.min_anonymity)
        ordered = self._by_latency.get(key)
        if ordered is None:
            ordered = sorted(
                self.view(filters), key=lambda c: (c[C_LATENCY] is None, c[C_LATENCY] or 0.0, c[C_ID])
            )
            self._by_latency[key] = ordered
        for c in ordered:
            if c[C_ID] not in self.discarded and c[C_LAST_SUCCESS] >= cutoff and c[C_KEY] not in filters.exclude:
                yield c

    def matches(self, c: Candidate, filters: Filters) -> bool:
        """``Filters.matches`` on a candidate (``exclude`` is checked per proposal)."""
        tags = self._tag_sets.get(c[C_TAGS])
        if tags is None:
            tags = self._tag_sets[c[C_TAGS]] = frozenset(json.loads(c[C_TAGS] or "[]"))
        return filters.matches(c[C_SCHEME], c[C_ANONYMITY], tags)


__all__ = ["Snapshot"]
