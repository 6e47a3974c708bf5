"""The README documents every gateway setting and the deployment; compose environments fit."""

import re

import pytest
import yaml

from gateway.settings import GatewaySettings
from tests.deploy.files import COMPOSE, GPU_STACKS, ROOT, load_compose, with_defaults
from tests.deploy.settings_table import render, variable

README = (ROOT / "README.md").read_text()


def table_rows(text: str) -> dict[str, str]:
    """GATEWAY_ variable -> its Default cell, from Markdown table rows that start with one."""
    rows = re.findall(r"^\| `(GATEWAY_[A-Z0-9_]+)` \|([^|]*)\|", text, flags=re.MULTILINE)
    return {name: cell.strip().strip("`") for name, cell in rows}


def same_default(documented: str, field: str) -> bool:
    actual = GatewaySettings.model_fields[field].get_default(call_default_factory=True)
    if actual is None or actual in ([], {}):
        return documented in {"", "unset"}
    if isinstance(actual, bool):
        return documented.lower() == str(actual).lower()
    if isinstance(actual, int | float):
        return documented.replace("_", "").replace(".", "", 1).isdigit() and (
            float(documented) == float(actual)
        )
    return documented == str(actual)


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    documented = table_rows(README)
    expected = {variable(field): field for field in GatewaySettings.model_fields}
    hint = "rows for new settings: .venv/bin/python -m tests.deploy.settings_table"
    missing = sorted(set(expected) - set(documented))
    stale = sorted(set(documented) - set(expected))
    assert not missing, f"README's settings table lacks {missing}; {hint}"
    assert not stale, f"README documents settings that do not exist: {stale}"
    wrong = [name for name, field in expected.items() if not same_default(documented[name], field)]
    assert not wrong, f"README's defaults disagree with GatewaySettings for {wrong}"


def test_default_check_catches_a_wrong_default() -> None:
    assert same_default("1.0", "poll_interval") and same_default("1", "poll_interval")
    assert not same_default("2.0", "poll_interval")
    assert same_default("", "replicas") and not same_default("x", "admin_key")
    assert same_default("round_robin", "strategy") and not same_default("queue_depth", "strategy")
    assert same_default("false", "allow_open_admin") and not same_default("0", "allow_open_admin")


def test_generated_table_names_every_setting_once() -> None:
    rows = table_rows(render())
    assert list(rows) == [variable(field) for field in GatewaySettings.model_fields]
    assert all(same_default(rows[variable(f)], f) for f in GatewaySettings.model_fields)


def deploy_section() -> str:
    return README.split("## Deploy on a GPU host", 1)[1].split("\n## ", 1)[0]


def test_readme_deploy_section_covers_up_check_compare_down() -> None:
    section = deploy_section()
    for needle in (
        "compose/baseline.yaml",
        "compose/managed.yaml",
        "compose/managed-prefix.yaml",
        "compose/sim.yaml",
        "up -d",
        "/health",
        "loadtest compare compose-baseline compose-managed",
        "down",
        "--profile observability",
    ):
        assert needle in section, needle


@pytest.mark.parametrize(
    ("topic", "needles"),
    [
        ("driver", ["580", "-cu129", "CUDA 13"]),
        ("licences", ["Llama 3.1", "Mixtral", "mistralai/Mixtral-8x7B-Instruct-v0.1", "accept"]),
        ("disk", ["125 GB", "docker volume create turnout-hf-cache"]),
        ("first start", ["start_period", "download", "compile"]),
        ("digests", ["scripts/refresh-digests.py", "--check", "imagetools inspect"]),
        ("keys", ["scripts/new-env.sh", "GATEWAY_ADMIN_KEY", "GRAFANA_ADMIN_PASSWORD"]),
        ("ports", ["BIND_ADDRESS", "127.0.0.1", "GATEWAY_API_KEYS"]),
        ("prefix caching", ["KVCACHED_MAX_CACHED_TOKENS", "enables it by default"]),
    ],
)
def test_readme_deploy_section_states(topic: str, needles: list[str]) -> None:
    section = deploy_section()
    missing = [needle for needle in needles if needle not in section]
    assert not missing, f"README's deploy section says nothing of {topic}: {missing}"


def compose_environments() -> dict[str, dict[str, str]]:
    data = yaml.safe_load((COMPOSE / "environments.yaml").read_text())
    environments: dict[str, dict[str, str]] = data["environments"]
    return environments


def test_compose_environments_point_at_the_published_gateways() -> None:
    published = set()
    for stack in GPU_STACKS:
        for mapping in load_compose(stack)["services"]["gateway"]["ports"]:
            address, port, _ = with_defaults(mapping).split(":")
            published.add(f"http://{address}:{port}")
    assert {env["url"] for env in compose_environments().values()} == published
    sim = load_compose("sim")["services"]
    for name, env in compose_environments().items():
        mapping = sim[name.replace("compose-", "gateway-")]["ports"][0]
        assert env["url"] == "http://" + with_defaults(mapping).rsplit(":", 1)[0], name


def test_compose_environments_load_in_loadtest() -> None:
    environments = pytest.importorskip("loadtest.environments.catalog")
    loaded = environments.load_environments(COMPOSE / "environments.yaml")
    assert loaded["compose-baseline"].url == "http://127.0.0.1:8080"
    assert loaded["compose-managed"].url == "http://127.0.0.1:8081"
    assert loaded["compose-managed-prefix"].url == "http://127.0.0.1:8082"
    assert loaded["compose-managed-colocated"].url == "http://127.0.0.1:8083"
