"""The admin key for /admin (GATEWAY_ADMIN_KEY); client keys are gateway/keys.py's."""

import hmac

from gateway.errors import Unauthorized


def check_bearer(authorization: bytes | None, keys: tuple[bytes, ...], what: str) -> None:
    """Raise Unauthorized unless `authorization` is `Bearer <one of keys>` (or no keys)."""
    if not keys:
        return
    if not authorization:
        raise Unauthorized(f"missing {what}: send it as 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(b" ")
    token = token.strip()
    # Compare with every key, in constant time each, so timing tells nothing.
    matches = [hmac.compare_digest(token, key) for key in keys]
    if scheme.lower() != b"bearer" or not any(matches):
        raise Unauthorized(f"invalid {what}")
