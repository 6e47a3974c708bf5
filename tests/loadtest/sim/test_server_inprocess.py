"""The replica app in-process: what happens when the engine itself breaks."""

import asyncio

import httpx
import pytest

from loadtest.sim.replica import ReplicaConfig
from loadtest.sim.server import create_app

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failing_engine_fails_requests_instead_of_hanging(stream: bool) -> None:
    app = create_app(ReplicaConfig(model="m", profile="tiny"))
    await app.startup()
    try:

        def broken(now: float) -> None:
            raise RuntimeError("engine bug")

        app.running.engine.step = broken  # type: ignore[method-assign,assignment]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            async with asyncio.timeout(5):
                response = await client.post(
                    "/v1/chat/completions", json={**BODY, "stream": stream}
                )
            if stream:
                assert response.status_code == 200
                assert '"code":500' in response.text and response.text.endswith("[DONE]\n\n")
            else:
                assert response.status_code == 500
                assert response.json()["error"]["type"] == "InternalServerError"
            # The loop is gone now: later requests get a 500 at once, not a hang.
            async with asyncio.timeout(5):
                again = await client.post("/v1/chat/completions", json=BODY)
            assert again.status_code == 500
    finally:
        await app.shutdown()
