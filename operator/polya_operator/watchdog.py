"""Liveness for kopf's watch: detect a PolyaRun watch stream that stalled silently.

A watch connection can stay open while the API server (or a proxy in between) stops sending
events; kopf then sees nothing and the operator idles while runs change. Every ``interval``
seconds the operator LISTs the PolyaRuns (one request; ``list`` is granted anyway) and
compares each object's resourceVersion with the one kopf's index holds:

* an object whose listed version differs from the indexed one is *lagging* (the event may
  simply be in flight);
* if an object was already lagging at the previous check and the index has not moved for it
  since, a whole interval passed without its event: the watch is stalled.

A stalled watch makes ``/healthz`` answer 503, so the kubelet restarts the pod and kopf
lists everything again (nothing is lost: the planner re-derives all from the cluster).
"""

from __future__ import annotations

import time
from typing import Any

Key = tuple[str, str]  # (namespace, name)


class WatchCheck:
    def __init__(self, interval: float):
        self.interval = interval
        self.next_at = time.monotonic() + interval
        self.lagging: dict[Key, tuple[str | None, str | None]] = {}  # key -> (listed, indexed)
        self.stalled_since: float | None = None
        self.checks = 0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def compare(self, listed: dict[Key, str | None], indexed: dict[Key, str | None]) -> bool:
        """Record one comparison; returns True when the watch is stalled."""
        self.next_at = time.monotonic() + self.interval
        self.checks += 1
        lagging: dict[Key, tuple[str | None, str | None]] = {}
        for key in set(listed) | set(indexed):
            have, want = indexed.get(key), listed.get(key)
            if have != want:
                lagging[key] = (want, have)
        stuck = any(key in self.lagging and self.lagging[key][1] == have
                    for key, (_, have) in lagging.items())
        self.lagging = lagging
        if stuck and self.stalled_since is None:
            self.stalled_since = time.monotonic()
        elif not stuck:
            self.stalled_since = None
        return stuck


def listed_versions(items: list[dict[str, Any]]) -> dict[Key, str | None]:
    out: dict[Key, str | None] = {}
    for item in items:
        meta = item.get("metadata") or {}
        out[(meta.get("namespace") or "", meta.get("name") or "")] = meta.get("resourceVersion")
    return out
