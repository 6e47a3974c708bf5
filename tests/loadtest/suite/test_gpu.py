"""GPU telemetry: NVML replaced at its boundary (the pynvml module) by a fake with two GPUs;
and the real pynvml on this machine, which has no GPU."""

import importlib
import time
from types import SimpleNamespace
from typing import Any

import pytest

from loadtest.suite.gpu import GpuTelemetry, read_gpu_samples, write_gpu_samples


class NVMLError(Exception):
    pass


def fake_nvml(*, devices: int = 2, fail_init: bool = False) -> Any:
    """What pynvml exposes, for `devices` GPUs; GPU 1 has no power sensor."""
    state = {"initialised": 0, "shutdown": 0}

    def init() -> None:
        if fail_init:
            raise NVMLError("Driver Not Loaded")
        state["initialised"] += 1

    def power(handle: int) -> int:
        if handle == 1:
            raise NVMLError("Not Supported")
        return 312_500  # milliwatts

    return SimpleNamespace(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        state=state,
        nvmlInit=init,
        nvmlShutdown=lambda: state.__setitem__("shutdown", state["shutdown"] + 1),
        nvmlDeviceGetCount=lambda: devices,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetTemperature=lambda handle, sensor: 61 + handle,
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(used=40 * 2**30),
        nvmlDeviceGetUtilizationRates=lambda handle: SimpleNamespace(gpu=87, memory=40),
    )


def test_every_gpu_is_sampled_at_the_interval_until_stopped(tmp_path: Any) -> None:
    nvml = fake_nvml()
    said: list[str] = []
    gpu = GpuTelemetry(0.02, say=said.append, nvml=lambda: nvml)
    assert gpu.start()
    deadline = time.monotonic() + 5
    while len(gpu.samples) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    gpu.stop()
    count = len(gpu.samples)
    time.sleep(0.06)
    assert len(gpu.samples) == count, "sampling went on after stop"
    assert nvml.state == {"initialised": 1, "shutdown": 1}
    assert said == [
        "GPU telemetry: 2 GPU(s) sampled every 0.02 s (0: NVIDIA H100 80GB HBM3, "
        "1: NVIDIA H100 80GB HBM3)"
    ]
    first, second = gpu.samples[0], gpu.samples[1]
    assert (first.gpu, first.power_w, first.temperature_c) == (0, 312.5, 61)
    assert (first.memory_used_gib, first.utilization_pct) == (40, 87)
    assert (second.gpu, second.power_w, second.temperature_c) == (1, None, 62)
    assert gpu.between(first.at, first.at) == gpu.samples[:2]
    path = tmp_path / "gpu.jsonl"
    write_gpu_samples(gpu.samples, path)
    assert read_gpu_samples(path) == gpu.samples


@pytest.mark.parametrize(
    ("nvml", "why"),
    [
        (lambda: fake_nvml(fail_init=True), "NVML unavailable (Driver Not Loaded)"),
        (lambda: fake_nvml(devices=0), "NVML found no GPU"),
    ],
)
def test_no_gpu_is_said_once_and_nothing_is_recorded(nvml: Any, why: str) -> None:
    said: list[str] = []
    gpu = GpuTelemetry(0.01, say=said.append, nvml=nvml)
    assert not gpu.start()
    time.sleep(0.05)
    gpu.stop()
    assert said == [f"GPU telemetry: none: {why}; nothing recorded"]
    assert gpu.samples == []


def test_this_machine_without_a_gpu_through_the_real_library() -> None:
    pynvml = importlib.import_module("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:  # pragma: no cover - a machine with a GPU and a driver
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    said: list[str] = []
    gpu = GpuTelemetry(0.01, say=said.append)
    assert not gpu.start()
    gpu.stop()
    assert len(said) == 1 and said[0].startswith("GPU telemetry: none: NVML unavailable")
    assert gpu.samples == []


def test_without_the_package_it_says_so() -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    said: list[str] = []
    assert not GpuTelemetry(say=said.append, nvml=missing).start()
    assert said == ["GPU telemetry: none: nvidia-ml-py (pynvml) is not installed; nothing recorded"]
