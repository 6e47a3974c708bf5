"""GPU telemetry through NVML (nvidia-ml-py's `pynvml`): power, temperature, memory used and
utilisation of every GPU of this machine, at an interval, while a suite runs.

Sampling runs on its own thread, so the NVML calls never hold the load generator's event loop.
On a machine without a GPU (no NVML library, no driver, no device) `start` says so once and
nothing is recorded. Tests replace the `pynvml` module, NVML's boundary, and nothing else.
"""

import importlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

FIELDS = {
    "power_w": "power (W)",
    "temperature_c": "temperature (°C)",
    "memory_used_gib": "memory used (GiB)",
    "utilization_pct": "utilisation (%)",
}


@dataclass(frozen=True, slots=True)
class GpuSample:
    # Seconds since the epoch.
    at: float
    gpu: int
    name: str
    power_w: float | None
    temperature_c: float | None
    memory_used_gib: float | None
    utilization_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_nvml() -> ModuleType:
    return importlib.import_module("pynvml")


class GpuTelemetry:
    """Samples every GPU every `interval_s` from `start` to `stop`; `samples` holds them."""

    def __init__(
        self,
        interval_s: float = 1.0,
        *,
        say: Callable[[str], None] = lambda _text: None,
        nvml: Callable[[], ModuleType] = load_nvml,
    ) -> None:
        self.interval_s = interval_s
        self._say = say
        self._load = nvml
        self._nvml: Any = None
        self._handles: list[tuple[int, str, Any]] = []
        self.samples: list[GpuSample] = []
        self.status = "not started"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Begin sampling; False (said once) when this machine has no GPU NVML can read."""
        try:
            nvml = self._load()
        except ImportError:
            return self._none("nvidia-ml-py (pynvml) is not installed")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return self._none(f"NVML unavailable ({exc})")
        try:
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                self._handles.append(
                    (index, name.decode() if isinstance(name, bytes) else name, handle)
                )
        except nvml.NVMLError as exc:
            nvml.nvmlShutdown()
            return self._none(f"NVML could not list the GPUs ({exc})")
        if not self._handles:
            nvml.nvmlShutdown()
            return self._none("NVML found no GPU")
        self._nvml = nvml
        names = ", ".join(f"{i}: {name}" for i, name, _ in self._handles)
        self.status = f"{len(self._handles)} GPU(s) sampled every {self.interval_s:g} s ({names})"
        self._say(f"GPU telemetry: {self.status}")
        self._thread = threading.Thread(target=self._loop, name="gpu-telemetry", daemon=True)
        self._thread.start()
        return True

    def _none(self, why: str) -> bool:
        self.status = f"none: {why}; nothing recorded"
        self._say(f"GPU telemetry: {self.status}")
        return False

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            self.sample()
            next_at += self.interval_s
            self._stopping.wait(max(0.0, next_at - time.monotonic()))

    def sample(self) -> None:
        """One sample of every GPU (a reading NVML refuses is left empty)."""
        nvml, now = self._nvml, time.time()
        found = []
        for index, name, handle in self._handles:
            found.append(
                GpuSample(
                    now,
                    index,
                    name,
                    _read(nvml, nvml.nvmlDeviceGetPowerUsage, handle, scale=1e-3),
                    _read(nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
                    _read(nvml, nvml.nvmlDeviceGetMemoryInfo, handle, attr="used", scale=2**-30),
                    _read(nvml, nvml.nvmlDeviceGetUtilizationRates, handle, attr="gpu"),
                )
            )
        with self._lock:
            self.samples.extend(found)

    def between(self, start: float, end: float) -> list[GpuSample]:
        with self._lock:
            return [s for s in self.samples if start <= s.at <= end]

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(timeout=5 * self.interval_s + 1)
            self._thread = None
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None


def _read(
    nvml: Any, call: Callable[..., Any], *args: Any, attr: str | None = None, scale: float = 1.0
) -> float | None:
    """One NVML reading (an attribute of it, times `scale`); None when NVML refuses it (a
    device without a power sensor, say)."""
    try:
        value = call(*args)
        return float(getattr(value, attr) if attr else value) * scale
    except nvml.NVMLError:
        return None


def write_gpu_samples(samples: Sequence[GpuSample], path: Path) -> None:
    with path.open("wb") as sink:
        for sample in samples:
            sink.write(orjson.dumps(sample.to_dict()) + b"\n")


def read_gpu_samples(path: Path) -> list[GpuSample]:
    if not path.exists():
        return []
    with path.open("rb") as source:
        return [GpuSample(**orjson.loads(line)) for line in source if line.strip()]
