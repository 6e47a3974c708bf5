"""The ASGI messages of one exchange, for the simulator's server: answering, reading the
body, noticing a client that left, and dropping a connection on purpose (faults)."""

import asyncio

from loadtest.sim.api import ApiError
from loadtest.sim.replica import Stream
from turnout.asgi import Receive, Send

MAX_BODY_BYTES = 32 * 1024 * 1024


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client left while sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def watch_disconnect(receive: Receive, stream: Stream) -> None:
    """Wake the stream's handler as soon as the client goes away."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.disconnected = True
    stream.notify()


async def wait_disconnect(receive: Receive, seconds: float) -> bool:
    """True if the client left within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    except TimeoutError:
        return False


def drop_connection(send: Send) -> bool:
    """Close the client's socket without a response (uvicorn's send is bound to its cycle)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True
