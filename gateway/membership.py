"""Replicas joining and leaving at run time: from the admin API (an operator, a Slurm job
registering itself) or from a discovery (gateway/k8s_discovery.py).

A replica that joins is out of routing until its first health check passes (run at once,
so the caller learns whether it is up); the poller and health checker follow the pool's
membership by themselves (gateway/periodic.py). A replica that leaves gets no new request
and stays in the pool until its last request in flight has finished (routers/pool.py), so
taking one out never fails a request on it.
"""

import asyncio
import contextlib
from typing import Any

from gateway.errors import Conflict, NotFound
from gateway.health import HealthChecker
from gateway.replicas_file import ReplicaEntry, alias_clash
from gateway.upstream import Upstream
from routers.pool import ReplicaPool


class Membership:
    def __init__(self, pool: ReplicaPool[Upstream], health: HealthChecker, log: Any) -> None:
        self._pool = pool
        self._health = health
        self._log = log
        # Who added each replica ("admin", or a discovery's name); discovery only ever
        # removes its own. Replicas not in it came from the configuration.
        self._sources: dict[str, str] = {}

    def _forget_gone(self) -> None:
        for name in [n for n in self._sources if n not in self._pool]:
            del self._sources[name]

    def source_of(self, name: str) -> str:
        return self._sources.get(name, "config")

    def get(self, name: str) -> Upstream:
        """The replica called `name`; NotFound (404) when there is none."""
        if name not in self._pool:
            raise NotFound(f"no replica named {name!r}; GET /admin/replicas lists them")
        return self._pool.get(name)

    async def add(self, entry: ReplicaEntry, source: str) -> tuple[Upstream, bool]:
        """Add the replica `entry` describes and check its health once. (replica, True if
        it is new). Adding one that is here with the same URL is harmless (a registration
        retried) and takes back one that was leaving; Conflict (409) when the name or the
        URL belongs to another replica."""
        if entry.name in self._pool:
            here = self._pool.get(entry.name)
            if here.url != entry.url:
                raise Conflict(
                    f"replica {entry.name!r} exists with URL {here.url}; remove it first "
                    "or choose another name",
                    param="name",
                )
            if here.leaving:
                self._sources[entry.name] = source
                self._pool.keep(entry.name)
                self._pool.drain(entry.name, False)
                self._log.info("replica_kept", replica=entry.name, source=source)
            return here, False
        for other in self._pool:
            if other.url == entry.url and not other.leaving:
                raise Conflict(f"URL {entry.url} is replica {other.id!r} already", param="url")
        # The replicas file's rule, against the replicas here now: one name, one model.
        present = [(r.id, tuple(sorted(r.aliases.items()))) for r in self._pool if not r.leaving]
        clash = alias_clash([*present, (entry.name, entry.aliases)])
        if clash is not None:
            raise Conflict(clash, param="aliases")
        self._forget_gone()
        replica = entry.to_replica()
        # Out of routing until its first health check passes.
        replica.healthy = False
        self._sources[replica.id] = source
        self._pool.add(replica)
        self._log.info("replica_added", replica=replica.id, url=replica.url, source=source)
        with contextlib.suppress(KeyError):  # removed again while its first check ran
            await self._health.check_once(replica.id)
        return replica, True

    def remove(self, name: str) -> bool:
        """Take the replica out (see the module's docstring). True if it is gone already,
        False while requests in flight on it finish."""
        replica = self.get(name)
        source = self.source_of(name)
        gone = self._pool.remove(name)
        self._log.info(
            "replica_removed" if gone else "replica_leaving",
            replica=name,
            in_flight=replica.in_flight,
            source=source,
        )
        return gone

    def drain(self, name: str, draining: bool) -> Upstream:
        replica = self.get(name)
        if replica.leaving and not draining:
            raise Conflict(f"replica {name!r} is leaving the pool; add it again instead")
        self._pool.drain(name, draining)
        self._log.info("replica_drained" if draining else "replica_resumed", replica=name)
        return replica

    async def sync(self, source: str, entries: list[ReplicaEntry]) -> None:
        """Make the replicas from `source` exactly `entries` (a discovery's whole view):
        add the new ones, take out those of `source` no longer in it. Replicas from
        elsewhere are never touched; a name taken by one of them is skipped and logged."""
        wanted = {entry.name: entry for entry in entries}
        for replica in list(self._pool):
            mine = self.source_of(replica.id) == source
            if mine and replica.id not in wanted and not replica.leaving:
                self.remove(replica.id)
        additions = []
        for entry in wanted.values():
            here = self._pool.get(entry.name) if entry.name in self._pool else None
            if here is not None and self.source_of(entry.name) != source:
                continue
            if here is not None and here.url == entry.url and not here.leaving:
                continue
            if here is not None and here.url != entry.url:
                self.remove(entry.name)
                if entry.name in self._pool:
                    continue  # the old one still finishes its requests; next event
            additions.append(self._add_quietly(entry, source))
        await asyncio.gather(*additions)

    async def _add_quietly(self, entry: ReplicaEntry, source: str) -> None:
        try:
            await self.add(entry, source)
        except Conflict as exc:
            self._log.warning("replica_not_added", replica=entry.name, reason=exc.message)
