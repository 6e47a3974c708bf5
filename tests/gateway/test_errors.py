import orjson
import pytest

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoReplicaAvailable,
    UpstreamTimeout,
    from_status,
    sse_error_event,
)


def test_body_is_openai_shaped() -> None:
    err = ModelNotFound("model 'x' is not served here", param="model")
    assert err.status == 404
    assert orjson.loads(err.body()) == {
        "error": {
            "message": "model 'x' is not served here",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_headers_travel_with_the_error() -> None:
    err = NoReplicaAvailable("none", headers={"retry-after": "2"})
    assert (err.status, err.headers) == (503, {"retry-after": "2"})


@pytest.mark.parametrize(
    ("status", "kind", "answered"),
    [(400, InvalidRequest, 400), (422, InvalidRequest, 400), (418, GatewayError, 500)],
)
def test_framework_statuses_map_into_the_tree(
    status: int, kind: type[GatewayError], answered: int
) -> None:
    err = from_status(status, "m")
    assert type(err) is kind
    assert err.status == answered


def test_sse_error_event_is_one_data_event() -> None:
    event = sse_error_event(UpstreamTimeout("silent"))
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert orjson.loads(event[6:])["error"]["code"] == "upstream_timeout"
