"""Rows for the README's table of GATEWAY_ settings, generated from GatewaySettings.

Print them after adding a setting: .venv/bin/python -m tests.deploy.settings_table
"""

from pydantic_core import PydanticUndefined

from gateway.settings import GatewaySettings


def variable(field: str) -> str:
    return f"GATEWAY_{field.upper()}"


def default(field: str) -> str:
    info = GatewaySettings.model_fields[field]
    value = info.get_default(call_default_factory=True)
    if value is PydanticUndefined or value is None or value in ([], {}):
        return "unset"
    return f"`{value}`"


def render() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for field, info in GatewaySettings.model_fields.items():
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{variable(field)}` | {default(field)} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(render())
