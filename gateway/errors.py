"""One exception tree for everything the gateway refuses or fails at, rendered as OpenAI's
error JSON `{"error": {"message", "type", "param", "code"}}` by one function."""

import orjson


class GatewayError(Exception):
    """Base of every error the gateway answers with. Subclasses fix status, type and code."""

    status = 500
    type = "internal_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


class InvalidRequest(GatewayError):
    """Malformed JSON, missing fields: the client must change the request."""

    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    """Unknown path."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class Conflict(GatewayError):
    """The request contradicts the gateway's state (a replica name or URL already taken)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RequestTimeout(GatewayError):
    """The client did not send its request (headers and body) in time."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class RateLimited(GatewayError):
    """A client key's rate or concurrency limit, or the gateway's global cap; the
    Retry-After header says when to try again. Type and code as OpenAI's own 429s."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})
        # Which limit: rate, concurrency or global (a metrics label).
        self.limit = limit


class Overloaded(GatewayError):
    """The gateway holds as many client connections as it is allowed to."""

    status = 503
    type = "service_unavailable"
    code = "too_many_connections"


class NoReplicaAvailable(GatewayError):
    """No healthy replica serves the model right now; the client may retry later."""

    status = 503
    type = "service_unavailable"
    code = "no_replica_available"


class UpstreamError(GatewayError):
    """The chosen replica could not be reached or broke the exchange."""

    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def from_status(status: int, message: str) -> GatewayError:
    """The framework's own HTTP errors (unknown path, wrong method, bad params), in our tree."""
    kinds: dict[int, type[GatewayError]] = {
        400: InvalidRequest,
        401: Unauthorized,
        404: NotFound,
        405: MethodNotAllowed,
        408: RequestTimeout,
        413: PayloadTooLarge,
        415: UnsupportedMediaType,
        422: InvalidRequest,
    }
    return kinds.get(status, GatewayError)(message)


def sse_error_event(err: GatewayError) -> bytes:
    """The last event of a stream that broke after its first byte (no retry possible)."""
    return b"data: " + err.body() + b"\n\n"
