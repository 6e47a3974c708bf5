"""A tiny Kubernetes API server for discovery tests, run as its own process:

    python -m tests.gateway.fake_k8s --port N

It serves EndpointSlices as the real API server does (discovery.k8s.io/v1): list with a
`labelSelector` (equality only) and a `resourceVersion`, and watch (`watch=true`) as
newline-delimited JSON events (ADDED, MODIFIED, DELETED; an ERROR event with a 410 Status
when asked to resume from a version it no longer has). Tests steer it:

- PUT /fake/slices/{namespace}/{name} with {"service", "endpoints", "ports"}: the slice is
  created or replaced (an ADDED or MODIFIED event);
- DELETE /fake/slices/{namespace}/{name}: a DELETED event;
- POST /fake/close: open watches end (as the server's timeout ends them); with
  {"compact": true} the event history is forgotten too, so a resumed watch gets 410;
- GET /fake/state: how many lists and watches were served, how many are open.
"""

import argparse
import asyncio
import copy
import functools
from typing import Any

import orjson
from aiohttp import web

SERVICE_LABEL = "kubernetes.io/service-name"
PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


class FakeApiServer:
    def __init__(self) -> None:
        self.version = 100
        # (namespace, name) -> slice JSON
        self.slices: dict[tuple[str, str], dict[str, Any]] = {}
        # (resourceVersion, namespace, event) in order; cleared by a compaction.
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.oldest = self.version
        self.changed = asyncio.Condition()
        self.closing = 0
        self.lists = 0
        self.watches = 0
        self.open_watches = 0

    def slice_json(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generateName": f"{body['service']}-",
                "uid": f"uid-{namespace}-{name}",
                "resourceVersion": str(self.version),
                "labels": {
                    SERVICE_LABEL: body["service"],
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
            },
            "addressType": body.get("addressType", "IPv4"),
            "endpoints": body.get("endpoints", []),
            "ports": body.get("ports", []),
        }

    async def emit(self, namespace: str, kind: str, obj: dict[str, Any]) -> None:
        async with self.changed:
            self.history.append((self.version, namespace, {"type": kind, "object": obj}))
            self.changed.notify_all()

    async def put_slice(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        body = await request.json()
        self.version += 1
        obj = self.slice_json(namespace, name, body)
        kind = "MODIFIED" if (namespace, name) in self.slices else "ADDED"
        self.slices[(namespace, name)] = obj
        await self.emit(namespace, kind, obj)
        return web.json_response({"resourceVersion": self.version})

    async def delete_slice(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        obj = self.slices.pop((namespace, name))
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        await self.emit(namespace, "DELETED", obj)
        return web.json_response({"resourceVersion": self.version})

    async def close(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        async with self.changed:
            if body.get("compact"):
                self.history.clear()
                self.oldest = self.version + 1
            self.closing += 1
            self.changed.notify_all()
        return web.json_response({"closed": True})

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"lists": self.lists, "watches": self.watches, "open_watches": self.open_watches}
        )

    async def endpoint_slices(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        wanted = _selector(request.query.get("labelSelector", ""))
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request, namespace, wanted)
        self.lists += 1
        items = [
            obj
            for (ns, _), obj in sorted(self.slices.items())
            if ns == namespace and _matches(obj, wanted)
        ]
        return web.json_response(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSliceList",
                "metadata": {"resourceVersion": str(self.version)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, namespace: str, wanted: dict[str, str]
    ) -> web.StreamResponse:
        self.watches += 1
        since = request.query.get("resourceVersion")
        response = web.StreamResponse(headers={"content-type": "application/json"})
        await response.prepare(request)
        if since and int(since) < self.oldest:
            gone = {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {since} ({self.oldest})",
                    "reason": "Expired",
                    "code": 410,
                },
            }
            await response.write(orjson.dumps(gone) + b"\n")
            return response
        # Without a version a watch starts with every object as ADDED, as Kubernetes does.
        sent = int(since) if since else self.version
        if not since:
            for (ns, _), obj in sorted(self.slices.items()):
                if ns == namespace and _matches(obj, wanted):
                    event = {"type": "ADDED", "object": obj}
                    await response.write(orjson.dumps(event) + b"\n")
        closing = self.closing
        self.open_watches += 1
        try:
            while True:
                async with self.changed:
                    await self.changed.wait_for(functools.partial(self._news, sent, closing))
                    if self.closing != closing:
                        break
                    events = [(v, ns, e) for v, ns, e in self.history if v > sent]
                for version, ns, event in events:
                    sent = version
                    if ns == namespace and _matches(event["object"], wanted):
                        await response.write(orjson.dumps(event) + b"\n")
        finally:
            self.open_watches -= 1
        return response

    def _news(self, sent: int, closing: int) -> bool:
        return self.closing != closing or any(v > sent for v, _, _ in self.history)


def _selector(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if "=" in part]
    return {key.strip(): value.strip() for key, value in pairs}


def _matches(obj: dict[str, Any], wanted: dict[str, str]) -> bool:
    labels = obj["metadata"].get("labels", {})
    return all(labels.get(key) == value for key, value in wanted.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = FakeApiServer()
    app = web.Application()
    app.router.add_get(PATH, server.endpoint_slices)
    app.router.add_put("/fake/slices/{namespace}/{name}", server.put_slice)
    app.router.add_delete("/fake/slices/{namespace}/{name}", server.delete_slice)
    app.router.add_post("/fake/close", server.close)
    app.router.add_get("/fake/state", server.state)
    app.router.add_get("/health", server.state)
    # Open watches never end by themselves: do not wait for them on SIGTERM.
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, shutdown_timeout=0.5)


if __name__ == "__main__":
    main()
