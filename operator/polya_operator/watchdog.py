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

Not kopf's ``settings.watching.inactivity_timeout`` alone: it reconnects a stream silent for
70 s from its last resourceVersion (kopf/_cogs/clients/watching.py, ``watch_objs``), is reset
by BOOKMARKs and tells liveness nothing, so a watch that stays silent after reconnecting goes
unseen.
"""

from __future__ import annotations

import time
from typing import Any

Key = tuple[str, str]  # (namespace, name)


class WatchCheck:
    def __init__(self, interval: float):
        self.interval = interval
        self.next_at = time.monotonic() + interval
        self.lagging: dict[Key, str | None] = {}  # key -> indexed version, behind the listed

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def compare(self, listed: dict[Key, str | None], indexed: dict[Key, str | None]) -> bool:
        """Record one comparison; returns True when the watch is stalled."""
        self.next_at = time.monotonic() + self.interval
        lagging = {key: indexed.get(key) for key in set(listed) | set(indexed)
                   if indexed.get(key) != listed.get(key)}
        stuck = any(key in self.lagging and self.lagging[key] == have
                    for key, have in lagging.items())
        self.lagging = lagging
        return stuck


def listed_versions(items: list[dict[str, Any]]) -> dict[Key, str | None]:
    out: dict[Key, str | None] = {}
    for item in items:
        meta = item.get("metadata") or {}
        out[(meta.get("namespace") or "", meta.get("name") or "")] = meta.get("resourceVersion")
    return out
