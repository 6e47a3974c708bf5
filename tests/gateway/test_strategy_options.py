"""GATEWAY_STRATEGY_OPTIONS: parsed from the environment, applied to the configured strategy."""

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from gateway.state import Gateway
from routers.least_work import LeastWork
from routers.p2c import PowerOfTwo
from routers.pool import Replica, ReplicaPool
from turnout.logs import get_logger

REPLICA = "http://127.0.0.1:9"


def test_options_come_as_json_or_key_value_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_STRATEGY_OPTIONS", '{"choices": 3, "load": "work"}')
    assert GatewaySettings(replicas=[REPLICA]).strategy_options == {"choices": 3, "load": "work"}
    monkeypatch.setenv("GATEWAY_STRATEGY_OPTIONS", "choices=3, load=work")
    assert GatewaySettings(replicas=[REPLICA]).strategy_options == {"choices": "3", "load": "work"}
    monkeypatch.delenv("GATEWAY_STRATEGY_OPTIONS")
    assert GatewaySettings(replicas=[REPLICA]).strategy_options == {}


def test_unparsable_options_fail_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_STRATEGY_OPTIONS", "{broken")
    with pytest.raises(ValidationError, match="not a JSON object"):
        GatewaySettings(replicas=[REPLICA])


def gateway(strategy: str, options: dict[str, Any]) -> Gateway:
    settings = GatewaySettings(replicas=[REPLICA], strategy=strategy, strategy_options=options)
    pool = ReplicaPool([Replica(id="a", url=REPLICA, models=("m",))])
    stub: Any = None  # switching touches neither the HTTP session nor telemetry
    return Gateway(settings, pool, stub, stub, LeastWork(), get_logger("test"))


def test_a_switch_back_to_the_configured_strategy_takes_its_options() -> None:
    gw = gateway("p2c", {"choices": "4"})
    gw.switch_strategy("least_work")
    assert isinstance(gw.strategy, LeastWork) and gw.strategy.decode_weight == 4.0
    gw.switch_strategy("p2c")
    assert isinstance(gw.strategy, PowerOfTwo) and gw.strategy.choices == 4
    gw.switch_strategy("p2c", {"choices": 2})
    assert isinstance(gw.strategy, PowerOfTwo) and gw.strategy.choices == 2
