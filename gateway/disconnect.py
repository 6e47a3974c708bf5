"""Noticing that the client went away while the gateway waits on a replica.

ASGI servers report a disconnect only through `receive()`, and uvicorn's `send()` after
a disconnect silently does nothing; so once the body is read, a small task waits on
`receive()` and cancels the request's handler when the client leaves. The cancellation
closes the upstream connection, which is what makes the replica stop.
"""

import asyncio
from typing import Any

from gateway.types import Receive


class DisconnectWatch:
    """Waits for the client's http.disconnect and cancels the handler when it comes.

    Armed only until the response is complete: uvicorn also reports a disconnect once
    the response has been sent, which must not cancel the final bookkeeping.
    """

    def __init__(self, receive: Receive, task: "asyncio.Task[Any]") -> None:
        self.gone = False
        self.armed = True
        self._receive = receive
        self._target = task
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if self.armed:
                    self.gone = True
                    self._target.cancel()
                return

    def stop(self) -> None:
        self.armed = False
        self._task.cancel()
