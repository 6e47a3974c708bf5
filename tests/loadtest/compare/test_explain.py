"""`loadtest compare A B --explain`: the chain of one-change links, each step's contribution
with its interval, the steps adding up to the comparison, and the refusals."""

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from loadtest.cli import app
from loadtest.compare.chain import CannotAttribute, derive_chain
from loadtest.compare.explain import EXPLAINED, Attribution
from loadtest.compare.options import CompareOptions
from loadtest.compare.session import compare
from loadtest.environments.catalog import load_environments, resolve
from loadtest.playback.fleets import virtual_fleet

TINY = "{model: sim/tiny, profile: tiny, args: [--max-num-seqs, '16']}"
TINY_64 = "{model: sim/tiny, profile: tiny, args: [--max-num-seqs, '64', --no-prefix-caching]}"
ENVIRONMENTS = f"""\
environments:
  small: {{strategy: round_robin, replicas: [{TINY}, {TINY}]}}
  large: {{strategy: queue_depth, replicas: [{TINY_64}, {TINY_64}]}}
  three: {{strategy: round_robin, replicas: [{TINY}, {TINY}, {TINY}]}}
  other-model: {{replicas: [{{model: m, profile: qwen2.5-7b-h100}}, {TINY}]}}
  tuned: {{strategy: round_robin, replicas: [{TINY}, {TINY}], gateway_env: {{GATEWAY_X: "1"}}}}
  remote: {{url: "http://127.0.0.1:9"}}
  lean:
    fleet: baseline
    gpu_memory_utilization: 0.7
    gateway_env: {{GATEWAY_POLL_INTERVAL: "0.5"}}
"""


@pytest.fixture
def envs(tmp_path: Path) -> Path:
    path = tmp_path / "envs.yaml"
    path.write_text(ENVIRONMENTS)
    return path


def test_baseline_to_managed_steps_add_up_to_the_comparison(tmp_path: Path) -> None:
    """The Done-when of the issue, on the virtual path: prefix caching, then KV mode, then
    routing; the steps' contributions sum to B - A within its interval, and the report and
    compare.json show them."""
    options = CompareOptions(
        mode="virtual", load=0.9, explain=True, virtual_requests=2000, resamples=300, out=tmp_path
    )
    result = compare("baseline", "managed", options)
    found = result.explain
    assert isinstance(found, Attribution)
    assert [link.name for link in found.links] == [
        "baseline",
        "baseline-noprefix",
        "managed-rr",
        "managed",
    ]
    assert [step.change for step in found.steps] == [
        "prefix caching on -> off",
        "KV mode static -> elastic",
        "routing round_robin -> least_work",
    ]
    envs = load_environments()
    for link, name in zip(found.links, ("baseline-noprefix", "managed-rr"), strict=False):
        assert link.fleet.replicas == virtual_fleet(resolve(envs, link.name)).replicas, name
    assert result.point is not None
    for figure in EXPLAINED:
        total = result.point.judged.by_name(figure)
        summed = sum(step.differences[figure].diff for step in found.steps)
        assert summed == pytest.approx(total.diff, rel=1e-9, abs=1e-12), figure
        assert total.low <= summed <= total.high, figure
        assert found.consistent(figure)
        for step in found.steps:  # every contribution comes with its own interval
            d = step.differences[figure]
            assert d.low <= d.diff <= d.high, (figure, step.change)
    # Not a degenerate answer: the steps differ, and one of them matters on TTFT p99.
    ttft = [step.differences["ttft_p99_s"] for step in found.steps]
    assert len({round(d.diff, 6) for d in ttft}) == 3
    assert any(d.winner is not None for d in ttft)
    document = orjson.loads((result.directory / "compare.json").read_bytes())
    explained = document["explain"]
    assert [s["change"] for s in explained["steps"]] == [s.change for s in found.steps]
    assert explained["consistent"] == dict.fromkeys(EXPLAINED, True)
    html = (result.directory / "report.html").read_text()
    assert "Why B differs from A: one change at a time" in html
    assert html.count("<svg") == 1 + 4  # the waterfalls, then the point's four plots
    assert "KV mode static -&gt; elastic" in html


def test_user_environments_get_a_chain_of_the_settings_they_differ_in(envs: Path) -> None:
    known = load_environments(envs)
    links = derive_chain(resolve(known, "small"), resolve(known, "large"), known)
    assert [link.change for link in links[1:]] == [
        "prefix caching on -> off",
        "max_num_seqs 16 -> 64",
        "routing round_robin -> queue_depth",
    ]
    assert links[1].name == "small + prefix caching off"
    assert links[2].name == "small + prefix caching off + max_num_seqs 64"
    configs = [link.fleet.replicas[0].config for link in links]
    assert [(c.prefix_caching, c.max_num_seqs) for c in configs] == [
        (True, 16),
        (False, 16),
        (False, 64),
        (False, 64),
    ]
    assert [link.fleet.strategy for link in links] == ["round_robin"] * 3 + ["queue_depth"]


def test_a_fleets_memory_share_and_poll_interval_are_steps_too(envs: Path) -> None:
    known = load_environments(envs)
    links = derive_chain(resolve(known, "baseline"), resolve(known, "lean"), known)
    assert [link.change for link in links[1:]] == [
        "GPU memory share 0.9 -> 0.7",
        "poll interval 1s -> 0.5s",
    ]
    first = links[1].fleet
    assert {r.config.gpu_memory_utilization for r in first.replicas} == {0.7}
    assert first.poll_interval == 1.0 and links[2].fleet.poll_interval == 0.5


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("small", "three", r"small runs 2 replicas and three 3"),
        ("small", "other-model", r"replica 0 serves sim/tiny \(tiny\) in small and m"),
        ("small", "tuned", r"gateway setting\(s\) GATEWAY_X, which virtual time does not play"),
        ("small", "remote", r"cannot attribute in virtual time: environment 'remote' is a URL"),
        ("small", "small", r"nothing to attribute: small and small play alike"),
    ],
)
def test_what_cannot_be_attributed_is_said_plainly(envs: Path, a: str, b: str, reason: str) -> None:
    known = load_environments(envs)
    with pytest.raises(CannotAttribute, match=reason):
        derive_chain(resolve(known, a), resolve(known, b), known)


def test_the_shipped_layouts_cannot_be_bridged() -> None:
    known = load_environments()
    with pytest.raises(CannotAttribute, match="runs 6 replicas and colocated-static 8"):
        derive_chain(resolve(known, "baseline"), resolve(known, "colocated-static"), known)
    links = derive_chain(
        resolve(known, "colocated-static"), resolve(known, "colocated-elastic"), known
    )
    assert [link.change for link in links[1:]] == ["KV mode static -> elastic"]


def test_the_command_prints_the_steps_or_why_not(envs: Path, tmp_path: Path) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(
        "models: {sim/tiny: 1.0}\nprompt_tokens: 200\noutput_tokens: 40\n"
        "arrival: {process: poisson, rate: 10}\nrequests: 200\nslo: {ttft: 0.5}\n"
    )
    runner = CliRunner()
    common = ["--environments", str(envs), "--workload", str(workload), "--out", str(tmp_path)]
    common += ["--virtual", "--load", "0.8", "--virtual-requests", "400", "--resamples", "100"]
    common += ["--no-progress"]
    done = runner.invoke(app, ["compare", "small", "large", "--explain", *common])
    assert done.exit_code == 0, done.output
    assert "why, one change at a time" in done.output
    for change in ("prefix caching on -> off", "max_num_seqs 16 -> 64", "round_robin -> queue"):
        assert change in done.output
    assert "3. large" in done.output
    assert "sum of the steps" in done.output and "A -> B, compared" in done.output
    assert "the steps add up to B - A of the comparison" in done.output
    refused = runner.invoke(app, ["compare", "small", "three", "--explain", *common])
    assert refused.exit_code == 0, refused.output
    assert "explain: cannot attribute: small runs 2 replicas and three 3" in refused.output
    live = runner.invoke(app, ["compare", "small", "large", "--explain", "--live"])
    assert live.exit_code == 2 and "--explain plays the chain in virtual time" in live.output
