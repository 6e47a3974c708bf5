import orjson

from turnout.logs import configure_logging, get_logger


def test_json_lines_carry_logger_name_and_fields(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("info", json=True)
    get_logger("gateway.test").info("request_routed", replica="r0")
    get_logger("gateway.test").debug("hidden")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert record["logger"] == "gateway.test"
    assert record["event"] == "request_routed"
    assert record["replica"] == "r0"
    assert record["level"] == "info"
    assert "timestamp" in record
