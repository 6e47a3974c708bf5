import subprocess

import pytest

from tests.procs import bin_path


@pytest.mark.parametrize("script", ["gateway", "loadtest", "vllm-sim"])
def test_console_script_prints_usage(script: str) -> None:
    result = subprocess.run(
        [bin_path(script), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
