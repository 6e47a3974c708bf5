"""The README documents every gateway setting; the compose environments file fits the stacks."""

import re

import pytest
import yaml

from gateway.settings import GatewaySettings
from tests.deploy.files import COMPOSE, ROOT, load_compose, with_defaults
from tests.deploy.settings_table import render, variable

README = (ROOT / "README.md").read_text()


def table_variables(text: str) -> list[str]:
    """GATEWAY_ variables named in the first cell of a Markdown table row."""
    return re.findall(r"^\| `(GATEWAY_[A-Z0-9_]+)` \|", text, flags=re.MULTILINE)


def test_every_setting_is_in_the_readme_table() -> None:
    documented = table_variables(README)
    expected = [variable(field) for field in GatewaySettings.model_fields]
    missing = sorted(set(expected) - set(documented))
    stale = sorted(set(documented) - set(expected))
    hint = "regenerate: .venv/bin/python -m tests.deploy.settings_table"
    assert not missing, f"README lacks {missing}; {hint}"
    assert not stale, f"README documents settings that do not exist: {stale}; {hint}"


def test_generated_table_names_every_setting_once() -> None:
    rows = table_variables(render())
    assert rows == [variable(field) for field in GatewaySettings.model_fields]
    assert len(rows) == len(set(rows))


def test_readme_deploy_section_covers_up_check_compare_down() -> None:
    section = README.split("## Deploy on a GPU host", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "compose/baseline.yaml",
        "compose/managed.yaml",
        "compose/sim.yaml",
        "up -d",
        "/health",
        "loadtest compare compose-baseline compose-managed",
        "down",
        "--profile observability",
    ):
        assert needle in section, needle


def compose_environments() -> dict[str, dict[str, str]]:
    data = yaml.safe_load((COMPOSE / "environments.yaml").read_text())
    environments: dict[str, dict[str, str]] = data["environments"]
    return environments


def test_compose_environments_point_at_the_published_gateways() -> None:
    published = set()
    for stack in ("baseline", "managed"):
        for mapping in load_compose(stack)["services"]["gateway"]["ports"]:
            published.add(with_defaults(mapping).split(":")[0])
    urls = {env["url"] for env in compose_environments().values()}
    assert urls == {f"http://127.0.0.1:{port}" for port in published}


def test_compose_environments_load_in_loadtest() -> None:
    environments = pytest.importorskip("loadtest.environments")
    loaded = environments.load_environments(COMPOSE / "environments.yaml")
    assert loaded["compose-baseline"].url == "http://127.0.0.1:8080"
    assert loaded["compose-managed"].url == "http://127.0.0.1:8081"
