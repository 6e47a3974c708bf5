"""A replica as the gateway knows it: the routing state the pool keeps (routers.pool), plus
what server it is and how to talk to it, which routing never needs."""

from dataclasses import dataclass, field
from typing import Protocol

import orjson

from gateway.deadlines import FirstByteEstimate
from gateway.kinds import Kind
from routers.pool import Replica


class Waiter(Protocol):
    """A request waiting for a replica's first byte (gateway/dispatch.py's Exchange)."""

    def replica_lost(self, replica_id: str) -> None: ...


@dataclass
class Upstream(Replica):
    # What server this is (None until told or detected), and whether its answers fit.
    kind: Kind | None = None
    kind_verified: bool = False
    # The Authorization header value for this replica (from api_key_env); never shown.
    authorization: bytes | None = field(default=None, repr=False)
    # Statuses that mean "busy, try another" from this kind of server (never ejects it).
    busy_statuses: frozenset[int] = frozenset()
    # Time to first byte, for streams and for whole answers (gateway/deadlines.py).
    first_byte_stream: FirstByteEstimate = field(default_factory=FirstByteEstimate)
    first_byte_whole: FirstByteEstimate = field(default_factory=FirstByteEstimate)
    # Requests on this replica still waiting for their first byte (nothing sent to their
    # clients yet): where an ejection sends them elsewhere at once (Gateway.replica_changed).
    waiting: set[Waiter] = field(default_factory=set, repr=False)

    def set_kind(self, kind: Kind | None) -> None:
        self.kind = kind
        self.max_in_flight = None if kind is None else kind.max_in_flight
        self.busy_statuses = frozenset() if kind is None else kind.busy_statuses

    def request_for(
        self, model: str, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The body and headers to send this replica: the model under its own name, and its
        API key. Unchanged (the very same objects) when it needs neither."""
        own = self.aliases.get(model) if self.aliases else None
        if own is not None:
            data = orjson.loads(body)
            data["model"] = own
            body = orjson.dumps(data)
        if self.authorization is not None:
            headers = [h for h in headers if h[0] != b"authorization"]
            headers.append((b"authorization", self.authorization))
        return body, headers
