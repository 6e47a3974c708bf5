import orjson

from gateway.kinds import KINDS
from gateway.upstream import Upstream


def test_request_for_rewrites_only_an_aliased_model_and_adds_only_a_replica_key() -> None:
    body = b'{"model": "public",  "messages": [{"role": "user", "content": "model public"}]}'
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer client")]
    plain = Upstream(id="a", url="http://a")
    # Nothing to change: the very same objects go out, byte for byte.
    same_body, same_headers = plain.request_for("public", body, headers)
    assert same_body is body and same_headers is headers

    aliased = Upstream(id="o", url="http://o", aliases={"public": "tag:8b"})
    new_body, new_headers = aliased.request_for("public", body, headers)
    assert orjson.loads(new_body) == {**orjson.loads(body), "model": "tag:8b"}
    assert new_headers is headers
    assert aliased.request_for("other", body, headers)[0] is body

    keyed = Upstream(id="k", url="http://k", authorization=b"Bearer sk-1")
    _, keyed_headers = keyed.request_for("public", body, headers)
    assert keyed_headers == [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-1"),
    ]
    assert headers[1] == (b"authorization", b"Bearer client")  # the client's list is untouched


def test_a_kind_sets_how_many_requests_the_replica_takes_and_what_busy_looks_like() -> None:
    one = Upstream(id="p", url="http://p")
    one.set_kind(KINDS["llama-cpp-python"])
    assert one.max_in_flight == 1
    ollama = Upstream(id="o", url="http://o")
    ollama.set_kind(KINDS["ollama"])
    assert ollama.max_in_flight is None and 503 in ollama.busy_statuses
    ollama.set_kind(None)
    assert ollama.busy_statuses == frozenset()
