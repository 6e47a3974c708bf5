"""`loadtest run` writes report.html and samples the replicas while it runs: through a real
gateway's /admin/replicas, and through a bare `vllm-sim` target's own /metrics."""

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from loadtest.environments.sampler import read_samples
from tests.loadtest.analysis.test_report import sections
from tests.loadtest.helpers import loadtest
from tests.procs import Proc, bin_path

WORKLOAD = {
    "models": ["tiny-model"],
    "prompt_tokens": {"dist": "uniform", "min": 20, "max": 200},
    "output_tokens": {"dist": "uniform", "min": 20, "max": 60},
    "arrival": {"process": "poisson", "rate": 20},
    "requests": 50,
    "seed": 11,
}

PLOTS = (
    "Latency CDFs",
    "TTFT over time",
    "Requests per replica",
    "Replica queue and KV usage over time",
)


def sim(spawn: Callable[..., Proc]) -> Proc:
    # Time scale 20: a request lasts about half a second, so samples every 0.5 s see it run.
    argv = [bin_path("vllm-sim"), "serve", "--model", "tiny-model", "--profile", "tiny"]
    return spawn([*argv, "--port", "{port}", "--log-level", "warning", "--time-scale", "20"])


def run(target: str, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    """`loadtest run` with WORKLOAD; its output and the report path it printed."""
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(WORKLOAD))
    out = tmp_path / "out"
    argv = ["run", "--target", target, "--workload", str(path), "--out", str(out)]
    done = loadtest(*argv, "--no-progress", *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout.replace("\n", "")  # rich wraps long paths
    where = re.search(r"report: (\S+?report\.html)", text)
    assert where is not None, done.stdout
    report = Path(where.group(1))
    (run_dir,) = out.iterdir()
    assert report == run_dir / "report.html"
    return text, report


def test_run_through_a_gateway_samples_admin_replicas_into_the_report(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    entries = [{"url": sim(spawn).url, "name": name} for name in ("alpha", "beta")]
    replicas_file = tmp_path / "replicas.yaml"
    replicas_file.write_text(yaml.safe_dump({"replicas": entries}))
    env = {
        "GATEWAY_REPLICAS_FILE": str(replicas_file),
        "GATEWAY_POLL_INTERVAL": "0.2",
        "GATEWAY_ADMIN_KEY": "admin-secret",
        "GATEWAY_LOG_LEVEL": "warning",
    }
    gateway = spawn([bin_path("gateway"), "--port", "{port}"], env=env)

    text, report = run(gateway.url, tmp_path, "--admin-key", "admin-secret")

    assert f"sampled from {gateway.url}/admin/replicas" in text
    samples = read_samples(report.parent / "replicas.jsonl")
    assert {s.replica for s in samples} == {"alpha", "beta"}
    assert all(s.in_flight is not None and s.healthy for s in samples)
    assert any((s.running or 0) > 0 for s in samples)  # the gateway's scrapes came through
    assert len(samples) >= 4  # two replicas, every 0.5 s of a run of about 2.5 s
    found = sections(report.read_text())
    for title in PLOTS:
        assert "<svg" in found[title], title
    for name in ("alpha", "beta"):
        assert name in found["Requests per replica"]
        assert name in found["Replica queue and KV usage over time"]


def test_run_against_a_bare_vllm_sim_samples_its_own_metrics(
    spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    target = sim(spawn)

    text, report = run(target.url + "/v1", tmp_path)

    assert f"sampled from {target.url}/metrics" in text
    samples = read_samples(report.parent / "replicas.jsonl")
    name = f"127.0.0.1:{target.port}"
    assert samples and {s.replica for s in samples} == {name}
    assert all(s.waiting is not None and s.kv_usage is not None for s in samples)
    assert any((s.running or 0) > 0 for s in samples)  # sampled while requests ran
    found = sections(report.read_text())
    for title in PLOTS:
        assert "<svg" in found[title], title
    assert name in found["Replica queue and KV usage over time"]
