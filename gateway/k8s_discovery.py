"""GATEWAY_DISCOVERY=k8s: the replicas are the ready endpoints of a Kubernetes Service.

The gateway lists the Service's EndpointSlices (label `kubernetes.io/service-name`), then
watches them from the list's resourceVersion; after every event the whole view goes to
`Membership.sync`, which adds new endpoints and drains removed ones (their requests in
flight finish). Any break of the watch (the API server closing it, a 410 Gone for an old
resourceVersion, a refused connection) starts over with a fresh list, after a backoff, so a
deletion missed while disconnected is still seen. Client: lightkube (AsyncClient, typed
models); its choice is in docs/scale-out.md.

An endpoint counts as a replica while its `conditions.ready` is not false (Kubernetes:
"nil should be interpreted as true"); a terminating pod turns not-ready and is drained.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.core.client import LabelSelector
from lightkube.models.discovery_v1 import EndpointPort
from lightkube.resources.discovery_v1 import EndpointSlice

from gateway.replicas_file import ConfigError, ReplicaEntry

SOURCE = "k8s"
SERVICE_LABEL = "kubernetes.io/service-name"
# Where a pod finds its own namespace (the service account's mount).
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def own_namespace(given: str | None) -> str:
    if given:
        return given
    try:
        return NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def replicas_from_slices(
    slices: Iterable[EndpointSlice], port_name: str | None
) -> list[ReplicaEntry]:
    """The replicas that `slices` say are ready, named after their pods (else address:port),
    sorted by name; a slice without the port asked for adds none."""
    found: dict[str, ReplicaEntry] = {}
    for piece in slices:
        port = _port(piece.ports or [], port_name)
        if port is None:
            continue
        for endpoint in piece.endpoints or []:
            conditions = endpoint.conditions
            if conditions is not None and conditions.ready is False:
                continue
            if not endpoint.addresses:
                continue
            address = endpoint.addresses[0]
            host = f"[{address}]" if ":" in address else address
            ref = endpoint.targetRef
            name = ref.name if ref is not None and ref.name else f"{address}:{port}"
            found[name] = ReplicaEntry(name=name, url=f"http://{host}:{port}")
    return [found[name] for name in sorted(found)]


def _port(ports: list[EndpointPort], name: str | None) -> int | None:
    for port in ports:
        if port.port is not None and (name is None or port.name == name):
            return port.port
    return None


class SliceWatch:
    """Keeps the Service's EndpointSlices by name and hands every change to `on_change`."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        service: str,
        port_name: str | None,
        on_change: Callable[[list[ReplicaEntry]], Awaitable[None]],
        log: Any,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._labels: LabelSelector = {SERVICE_LABEL: service}
        self._port_name = port_name
        self._on_change = on_change
        self._log = log
        self._slices: dict[str, EndpointSlice] = {}

    async def run(self) -> None:
        """List and watch forever; returns only when cancelled."""
        failures = 0
        while True:
            try:
                version = await self._list()
                failures = 0
                await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server is away or refused: list again
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                self._log.warning(
                    "k8s_watch_broken", error=f"{type(exc).__name__}: {exc}"[:200], retry_in=delay
                )
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        listing = self._client.list(EndpointSlice, namespace=self._namespace, labels=self._labels)
        slices = {_name(piece): piece async for piece in listing}
        version = ""
        with contextlib.suppress(Exception):  # an empty list may carry none
            version = listing.resourceVersion
        self._slices = slices
        await self._changed()
        return version

    async def _watch(self, version: str) -> None:
        events = self._client.watch(
            EndpointSlice,
            namespace=self._namespace,
            labels=self._labels,
            resource_version=version or None,
        )
        async for kind, piece in events:
            if kind == "DELETED":
                self._slices.pop(_name(piece), None)
            elif kind in ("ADDED", "MODIFIED"):
                self._slices[_name(piece)] = piece
            else:
                continue  # BOOKMARK
            await self._changed()

    async def _changed(self) -> None:
        entries = replicas_from_slices(self._slices.values(), self._port_name)
        self._log.info("k8s_endpoints", replicas=[e.name for e in entries])
        await self._on_change(entries)


def _name(piece: EndpointSlice) -> str:
    metadata = piece.metadata
    return "" if metadata is None or metadata.name is None else metadata.name


def load_config() -> KubeConfig:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config.
    ConfigError (one line) when there is neither."""
    try:
        return KubeConfig.from_env()
    except Exception as exc:
        raise ConfigError(
            "GATEWAY_DISCOVERY=k8s: no Kubernetes credentials (not in a pod with a service "
            f"account, and no $KUBECONFIG or ~/.kube/config): {exc}"
        ) from None


@contextlib.asynccontextmanager
async def watching(
    config: KubeConfig,
    namespace: str | None,
    service: str,
    port_name: str | None,
    on_change: Callable[[list[ReplicaEntry]], Awaitable[None]],
    log: Any,
) -> AsyncIterator[SliceWatch]:
    """The watch of `service`'s endpoints, running until the block ends."""
    client = AsyncClient(config=config)
    watch = SliceWatch(client, own_namespace(namespace), service, port_name, on_change, log)
    task = asyncio.create_task(watch.run(), name="k8s discovery")
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await client.close()
