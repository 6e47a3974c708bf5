"""Whether a target is simulated (vllm-sim), directly or behind a Turnout gateway.

vllm-sim's GET /version names it (`"simulator": "vllm-sim"`); a gateway lists its replicas
at GET /admin/replicas, whose /version is then asked. Used to decide whether prompts sized
with the simulator's approximate tokenizer are exact for the target, and to warn when not.
"""

import httpx

from loadtest.environments.catalog import Environment
from loadtest.workload.counting import TokenizerChoice

TIMEOUT_S = 2.0


def _is_sim(client: httpx.Client, base: str) -> bool:
    try:
        answer = client.get(f"{base.rstrip('/')}/version")
        return answer.status_code == 200 and answer.json().get("simulator") == "vllm-sim"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def is_simulated(target: str, *, admin_key: str | None = None) -> bool:
    """True when `target` is vllm-sim, or a gateway whose replicas all are. Never raises;
    a target that cannot be asked counts as not simulated."""
    base = target.rstrip("/").removesuffix("/v1")
    with httpx.Client(timeout=TIMEOUT_S) as client:
        if _is_sim(client, base):
            return True
        headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
        try:
            answer = client.get(f"{base}/admin/replicas", headers=headers)
            replicas = answer.json().get("replicas") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        urls = [r.get("url") for r in replicas or () if isinstance(r, dict)]
        return bool(urls) and all(isinstance(u, str) and _is_sim(client, u) for u in urls)


def tokenizer_warnings(a: Environment, b: Environment, choice: TokenizerChoice) -> list[str]:
    """The once-per-compare warning when prompts are sized for the simulator but a side is
    a deployment that is not simulated."""
    if choice.given:
        return []
    real = [env.name for env in (a, b) if env.url is not None and not is_simulated(env.url)]
    if not real:
        return []
    return [
        f"warning: no --tokenizer and {', '.join(real)} is not vllm-sim: prompt lengths follow "
        "the simulator's approximate tokenizer, so the target will count other lengths"
    ]
