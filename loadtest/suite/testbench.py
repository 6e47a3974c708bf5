"""The classic testbench YAML, read unchanged as a suite.

    benchmark: {name, description, target | targets | endpoint, ...}
    model: NAME | {name: NAME, quantization: fp8, tensor_parallel_size: 2, ...}
    context_lengths: [8192, 32768, 131072]        # one point per context length
    requests: {num_requests, concurrent_requests, arrival_pattern, rate_per_second,
               prompt_tokens_min, prompt_tokens_max, completion_tokens, ...}
    telemetry: {enabled, interval_seconds, ...}

`requests` is the workload (its classic fields are the workload format's own). Whatever this
tool cannot honour is kept as metadata, reported and written into every result row, never
dropped: the model's server properties (quantization, tensor parallel size: the server's
choice, not the client's), other `benchmark` keys, and telemetry settings it has no use for.
A suite's own fields (sweep, stop_when, warmup, ...) may sit beside these.
"""

from typing import Any

from loadtest.suite.apply import CONTEXT
from loadtest.suite.model import SuiteError
from loadtest.suite.spec import SuiteSpec

TESTBENCH_FIELDS = ("benchmark", "model", "context_lengths", "requests", "telemetry")
_TARGET_KEYS = ("target", "targets", "endpoint")
_TELEMETRY_USED = ("enabled", "interval_seconds", "interval", "gpu", "replicas")


def is_testbench(data: Any) -> bool:
    return isinstance(data, dict) and (
        "benchmark" in data or isinstance(data.get("requests"), dict)
    )


def _mapping(data: dict[str, Any], key: str, shape: str, source: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"suite {source}: {key}: expected a mapping {shape}, got {value!r}")
    return value


def translate(
    data: dict[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """(the suite mapping, metadata, notes) of a testbench file; SuiteError naming the field."""
    native_fields = [name for name in SuiteSpec.model_fields if name != "workload"]
    unknown = [key for key in data if key not in TESTBENCH_FIELDS and key not in native_fields]
    if unknown:
        allowed = ", ".join([*TESTBENCH_FIELDS, *native_fields])
        raise SuiteError(f"suite {source}: {unknown[0]}: unknown field; allowed: {allowed}")
    native = {key: value for key, value in data.items() if key in native_fields}
    metadata: dict[str, Any] = dict(native.pop("metadata", None) or {})
    notes: list[str] = []

    bench = _mapping(data, "benchmark", "{name, description, target, ...}", source)
    native.setdefault("name", bench.get("name"))
    native.setdefault("description", bench.get("description") or "")
    for key in _TARGET_KEYS:
        if bench.get(key) is not None:
            native.setdefault("targets", bench[key])
    extra = {k: v for k, v in bench.items() if k not in ("name", "description", *_TARGET_KEYS)}
    if extra:
        metadata["benchmark"] = extra
        notes.append(f"benchmark: {_listed(extra)} recorded as metadata, not used")

    model = data.get("model")
    if isinstance(model, dict):
        name = model.get("name")
        server = {k: v for k, v in model.items() if k != "name"}
        if server:
            metadata["server"] = server
            notes.append(
                f"server properties recorded as metadata, not set (they are the server's "
                f"choice, not the client's): {_listed(server)}"
            )
    else:
        name = model
    if name is not None and not isinstance(name, str):
        raise SuiteError(f"suite {source}: model: expected a name or {{name: NAME, ...}}")

    requests = dict(_mapping(data, "requests", "of workload fields", source))
    if "models" not in requests:
        if name is None:
            raise SuiteError(
                f"suite {source}: model: missing; give model: NAME or model: {{name: NAME, ...}}"
            )
        requests["models"] = [name]
    if requests.get("rate_per_second") is not None and requests.get("concurrent_requests"):
        cap = requests.pop("concurrent_requests")
        metadata["not_applied"] = {"requests.concurrent_requests": cap}
        notes.append(
            f"requests.concurrent_requests {cap} not applied: rate_per_second sets an open-loop "
            "schedule (loadtest sends at a rate or keeps a concurrency, not both)"
        )
    native["workload"] = {"name": native.get("name") or "requests", **requests}

    contexts = data.get("context_lengths")
    if contexts is not None:
        if not isinstance(contexts, list) or not contexts:
            raise SuiteError(f"suite {source}: context_lengths: expected a list of token counts")
        native["sweep"] = {CONTEXT: contexts, **(native.get("sweep") or {})}
        given = [
            k for k in ("prompt_tokens_min", "prompt_tokens_max", "prompt_tokens") if k in requests
        ]
        if given:
            notes.append(
                f"requests.{'/'.join(given)} replaced at each point: the prompt is the context "
                "length minus the longest completion"
            )

    telemetry = _mapping(data, "telemetry", "{enabled, interval_seconds, ...}", source)
    if telemetry:
        on = telemetry.get("enabled", True)
        native["telemetry"] = {
            "gpu": telemetry.get("gpu", on),
            "replicas": telemetry.get("replicas", on),
            "interval": telemetry.get("interval_seconds", telemetry.get("interval", 0.5)),
        }
        unused = {k: v for k, v in telemetry.items() if k not in _TELEMETRY_USED}
        if unused:
            metadata["telemetry"] = unused
            notes.append(
                f"telemetry: {_listed(unused)} recorded, not used (each GPU's power, "
                "temperature, memory used and utilisation are sampled)"
            )
    return native, metadata, tuple(notes)


def _listed(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())
