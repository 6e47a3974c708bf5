"""Noticing that the client went away while the gateway waits on a replica.

ASGI servers report a disconnect only through `receive()`, and uvicorn's `send()` after
a disconnect silently does nothing; so once the body is read, a small task waits on
`receive()` and cancels the request's handler when the client leaves. The cancellation
closes the upstream connection, which is what makes the replica stop.

A task per request is the dearest thing on the relay's path (tens of µs), and most
requests that end within a fraction of a second never need it: the task starts only
after `delay`, by a timer that costs almost nothing to cancel. A client that left
earlier is noticed then, since `receive()` reports a past disconnect at once.
"""

import asyncio
from typing import Any

from turnout.asgi import Receive

# Longest a disconnect may go unnoticed; negligible next to an LLM request's duration.
WATCH_DELAY_S = 0.1


class DisconnectWatch:
    """Waits for the client's http.disconnect and cancels the handler when it comes.

    Armed only until the response is complete: uvicorn also reports a disconnect once
    the response has been sent, which must not cancel the final bookkeeping.
    """

    def __init__(
        self, receive: Receive, task: "asyncio.Task[Any]", delay: float = WATCH_DELAY_S
    ) -> None:
        self.gone = False
        self.armed = True
        self._receive = receive
        self._target = task
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(delay, self._start)

    def _start(self) -> None:
        if self.armed:
            self._task = self._loop.create_task(self._watch())

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
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
