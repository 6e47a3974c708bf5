"""Read the deployment files the way Docker Compose and Prometheus would, without either."""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
STACKS = ("baseline", "managed", "managed-prefix", "managed-colocated", "sim")
GPU_STACKS = ("baseline", "managed", "managed-prefix", "managed-colocated")
FIXTURE_VLLM_METRICS = ROOT / "tests" / "fixtures" / "vllm-0.32.0-metrics.txt"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "turnout.json"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def load_compose(stack: str) -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE / f"{stack}.yaml").read_text())
    assert isinstance(data, dict), f"compose/{stack}.yaml is not a mapping"
    return data


def variables(text: str) -> set[str]:
    """Names of the variables a compose file interpolates."""
    return {match["name"] for match in _INTERPOLATION.finditer(text)}


def with_defaults(value: str, given: dict[str, str] | None = None) -> str:
    """Interpolate as Compose does with only `given` set: defaults apply, required vars fail."""
    values = given or {}

    def substitute(match: re.Match[str]) -> str:
        name, op = match["name"], match["op"]
        if values.get(name) or (name in values and op in ("-", "?")):
            return values[name]
        if op in (":-", "-"):
            return match["arg"]
        if op in (":?", "?"):
            raise LookupError(f"${{{name}}} is required: {match['arg']}")
        return ""

    return _INTERPOLATION.sub(substitute, value)


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a mapping (Compose accepts a mapping or a list of K=V)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def gateway_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if any(key.startswith("GATEWAY_") for key in environment(service))
    }


def replica_addresses(service: dict[str, Any]) -> list[str]:
    """host:port of every replica a gateway service is given in GATEWAY_REPLICAS."""
    urls = with_defaults(environment(service)["GATEWAY_REPLICAS"] or "")
    return [urlsplit(url.strip()).netloc for url in urls.split(",") if url.strip()]


def env_example_names() -> set[str]:
    """Variables .env.example documents, set (NAME=...) or shown commented out (# NAME=...)."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def exported_names(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition can hold, from its TYPE lines.

    Histograms and summaries also export _bucket/_sum/_count; a family with no samples yet
    (a labelled metric before its first use) still counts, because its TYPE line is there.
    """
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    names: set[str] = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.MULTILINE):
        name, kind = match.groups()
        names.add(name)
        names.update(name + suffix for suffix in suffixes.get(kind, ()))
    return names


def queried_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: turnout_* and vllm:* identifiers."""
    return set(re.findall(r"\b(?:turnout_[a-z0-9_]+|vllm:[a-z0-9_:]+)", expr))


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in load_dashboard()["panels"] for target in panel["targets"]]
