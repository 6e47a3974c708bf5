"""Client keys: lookup by digest, names, per-key limits, the keys file and its errors."""

import hashlib
from pathlib import Path

import pytest

from gateway.errors import Unauthorized
from gateway.keys import ANONYMOUS, KeysInvalid, build_ring, default_name, digest


def bearer(key: str) -> bytes:
    return f"Bearer {key}".encode()


def test_no_keys_means_anonymous_and_nothing_required() -> None:
    ring = build_ring([], None)
    assert not ring.required
    assert ring.check(None) is ANONYMOUS
    assert ring.check(b"Bearer whatever") is ANONYMOUS


def test_env_keys_are_named_by_their_digest_and_carry_the_default_limits() -> None:
    ring = build_ring(["sk-one", "sk-two"], None, rate=2.5, concurrency=3)
    one = ring.check(bearer("sk-one"))
    assert one.name == "key-" + hashlib.sha256(b"sk-one").hexdigest()[:8]
    assert (one.rate, one.burst, one.concurrency) == (2.5, 2.5, 3)
    assert ring.check(b"bearer   sk-two ").name == default_name(digest(b"sk-two"))
    for bad in (None, b"", b"Bearer sk-three", b"Basic sk-one", b"sk-one"):
        with pytest.raises(Unauthorized):
            ring.check(bad)


def test_file_keys_have_names_and_their_own_limits(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    hashed = hashlib.sha256(b"sk-hashed").hexdigest()
    path.write_text(
        "keys:\n"
        "  - {key: sk-a, name: team-a, rate: 5, burst: 10, concurrency: 2}\n"
        "  - {key: sk-b, name: team-b}\n"
        f"  - {{key_sha256: {hashed}, name: hashed, concurrency: 1}}\n"
    )
    ring = build_ring(["sk-env"], path, rate=1.0, concurrency=8)
    assert len(ring) == 4
    a = ring.check(bearer("sk-a"))
    assert (a.name, a.rate, a.burst, a.concurrency) == ("team-a", 5, 10, 2)
    # No limits of its own: the defaults apply.
    b = ring.check(bearer("sk-b"))
    assert (b.name, b.rate, b.concurrency) == ("team-b", 1.0, 8)
    # Its own concurrency, and then no rate (a key's own limits replace the defaults).
    hashed_key = ring.check(bearer("sk-hashed"))
    assert (hashed_key.name, hashed_key.rate, hashed_key.concurrency) == ("hashed", None, 1)
    assert ring.names() == sorted(["team-a", "team-b", "hashed", default_name(digest(b"sk-env"))])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("keys: [{name: x}]\n", ["entry 0", "exactly one of key and key_sha256"]),
        ("keys: [{key: sk-secret-1, rate: -1}]\n", ["entry 0", "rate", "greater than 0"]),
        ("keys: [{key: sk-secret-1, weight: 3}]\n", ["entry 0", "weight", "allowed: key"]),
        ("keys: [{key_sha256: abc}]\n", ["64 hex digits"]),
        ("- {key: sk-secret-1, name: a}\n- {key: sk-secret-2, name: a}\n", ["repeated: a"]),
        ("- {key: sk-secret-1}\n- {key: sk-secret-1}\n", ["given twice"]),
        ("keys: {a: 1}\n", ["expected a list of keys"]),
        ("keys: [key: sk-secret-1\n", ["not valid YAML", "line"]),
    ],
)
def test_a_bad_keys_file_is_one_line_without_the_key(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeysInvalid) as caught:
        build_ring([], path)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert "sk-secret" not in message


def test_a_missing_keys_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(KeysInvalid, match="cannot read"):
        build_ring([], tmp_path / "nope.yaml")
