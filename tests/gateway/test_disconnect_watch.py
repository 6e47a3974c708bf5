"""DisconnectWatch on its own, with a scripted `receive`."""

import asyncio
from typing import Any

import pytest

from gateway.disconnect import DisconnectWatch


def _me() -> "asyncio.Task[Any]":
    task = asyncio.current_task()
    assert task is not None
    return task


def receiver(disconnected: asyncio.Event) -> Any:
    async def receive() -> dict[str, Any]:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    return receive


async def test_a_disconnect_cancels_the_handler() -> None:
    disconnected = asyncio.Event()
    gone_at: list[bool] = []

    async def handler() -> None:
        watch = DisconnectWatch(receiver(disconnected), _me(), delay=0.01)
        try:
            await asyncio.sleep(5)
        finally:
            gone_at.append(watch.gone)
            watch.stop()

    task = asyncio.create_task(handler())
    await asyncio.sleep(0.05)
    disconnected.set()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task
    assert gone_at == [True]


async def test_a_disconnect_before_the_watch_starts_is_noticed_when_it_does() -> None:
    disconnected = asyncio.Event()
    disconnected.set()

    async def handler() -> None:
        DisconnectWatch(receiver(disconnected), _me(), delay=0.05)
        await asyncio.sleep(5)

    task = asyncio.create_task(handler())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task
    assert 0.04 <= loop.time() - started < 1


async def test_a_stopped_watch_never_cancels() -> None:
    disconnected = asyncio.Event()

    async def handler() -> str:
        watch = DisconnectWatch(receiver(disconnected), _me(), delay=0.01)
        await asyncio.sleep(0.05)
        watch.stop()
        disconnected.set()
        await asyncio.sleep(0.05)
        return "done"

    assert await asyncio.wait_for(handler(), 2) == "done"
