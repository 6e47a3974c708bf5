"""deploy/slurm/: every rendering is valid bash with no placeholder left, its #SBATCH
header asks Slurm for what the parameters say, and parameters that make no deployment
are refused in one line."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.slurm_render import load_render

render = load_render()

CASES = {
    "sglang-2-nodes-tp16": (["--gpus-per-replica", "16", "--replicas", "2"], 2, 8, (16, 1, 1)),
    "sglang-tp4-pp2": (
        ["--gpus-per-replica", "16", "--tp", "8", "--pp", "2", "--gpus-per-node", "8"],
        2,
        8,
        (8, 1, 2),
    ),
    "sglang-one-gpu": (["--gpus-per-replica", "1", "--replicas", "4"], 1, 1, (1, 1, 1)),
    "sglang-dp2": (["--gpus-per-replica", "8", "--dp", "2"], 1, 8, (4, 2, 1)),
    "vllm-tp2": (["--engine", "vllm", "--gpus-per-replica", "2"], 1, 2, (2, 1, 1)),
}


def rendered(tmp_path: Path, extra: list[str]) -> dict[str, str]:
    argv = ["--model", "meta-llama/Llama-3.1-70B-Instruct", "--out", str(tmp_path), *extra]
    assert render.main(argv) == 0
    return {p.name: p.read_text() for p in tmp_path.iterdir()}


def sbatch_options(script: str) -> dict[str, str]:
    """The #SBATCH options Slurm reads: those before the first command."""
    options: dict[str, str] = {}
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        match = re.match(r"#SBATCH --([a-z-]+)=(.*)", line)
        if match:
            options[match[1]] = match[2].strip()
    return options


@pytest.mark.parametrize("case", list(CASES))
def test_every_rendering_parses_and_asks_for_what_was_given(tmp_path: Path, case: str) -> None:
    extra, nodes, gpus_per_node, (tp, dp, pp) = CASES[case]
    scripts = rendered(tmp_path, extra)
    assert set(scripts) == {"replica.sbatch", "gateway.sbatch"}
    for name, text in scripts.items():
        assert "@@" not in text, name
        subprocess.run(["bash", "-n", str(tmp_path / name)], check=True)
        assert (tmp_path / name).stat().st_mode & 0o111
    options = sbatch_options(scripts["replica.sbatch"])
    assert options["nodes"] == str(nodes)
    assert options["gres"] == f"gpu:h100:{gpus_per_node}"
    assert options["ntasks-per-node"] == "1"
    assert options["signal"].startswith("B:TERM@")
    replicas = extra[extra.index("--replicas") + 1] if "--replicas" in extra else "1"
    assert options["array"] == f"0-{int(replicas) - 1}"
    command = re.search(r"bash -c 'exec (.*)' &", scripts["replica.sbatch"])
    assert command is not None
    words = command[1].split()
    if "vllm" in case:
        assert words[:2] == ["vllm", "serve"]
        assert words[words.index("--tensor-parallel-size") + 1] == str(tp)
        assert words[words.index("--pipeline-parallel-size") + 1] == str(pp)
    else:
        assert words[words.index("--tp-size") + 1] == str(tp)
        assert words[words.index("--dp-size") + 1] == str(dp)
        assert words[words.index("--pp-size") + 1] == str(pp)
        assert words[words.index("--nnodes") + 1] == str(nodes)
        assert words[words.index("--node-rank") + 1] == "$SLURM_NODEID"
        assert words[words.index("--dist-init-addr") + 1].startswith("$HEAD:")
    gateway = sbatch_options(scripts["gateway.sbatch"])
    assert gateway["nodes"] == "1" and "gres" not in gateway
    assert "GATEWAY_DISCOVERY=admin" in scripts["gateway.sbatch"]


@pytest.mark.parametrize("case", list(CASES))
def test_shellcheck_finds_nothing(tmp_path: Path, case: str) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    rendered(tmp_path, CASES[case][0])
    for name in ("replica.sbatch", "gateway.sbatch"):
        result = subprocess.run(
            [shellcheck, "-s", "bash", str(tmp_path / name)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def test_partition_and_account_land_in_the_header(tmp_path: Path) -> None:
    scripts = rendered(
        tmp_path, ["--gpus-per-replica", "8", "--partition", "gpu", "--account", "proj1"]
    )
    for text in scripts.values():
        options = sbatch_options(text)
        assert options["partition"] == "gpu" and options["account"] == "proj1"


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--gpus-per-replica", "12"], ["--gpus-per-replica 12", "multiple of --gpus-per-node 8"]),
        (["--gpus-per-replica", "8", "--tp", "3"], ["--tp 3", "multiply"]),
        (["--gpus-per-replica", "0"], ["--gpus-per-replica", "at least 1"]),
        (["--engine", "vllm", "--gpus-per-replica", "16"], ["--engine vllm", "Ray"]),
        (["--gpus-per-replica", "8", "--time", "forever"], ["--time", "hours"]),
        (["--gpus-per-replica", "8", "--gateway-url-file", "a b"], ["--gateway-url-file"]),
    ],
)
def test_bad_parameters_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: list[str]
) -> None:
    argv = ["--model", "m/x", "--out", str(tmp_path), *extra]
    assert render.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("render.py: ")
    for word in words:
        assert word in error
    assert list(tmp_path.iterdir()) == []


def test_a_model_name_a_shell_would_expand_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", "x'; rm -rf ~", "--gpus-per-replica", "1", "--out", str(tmp_path)]
    assert render.main(argv) == 2
    assert "--model" in capsys.readouterr().err
