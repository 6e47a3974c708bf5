import orjson
import pytest

from loadtest.batch.tasks import InvalidLine, parse_line

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def line(document: object) -> bytes:
    return orjson.dumps(document) + b"\n"


def test_a_chat_body_without_custom_id_is_sent_as_is_and_named_by_its_line() -> None:
    raw = b'{"model": "m",  "messages": [{"role": "user", "content": "hi"}]}\r\n'
    task = parse_line(raw, 7)
    assert (task.custom_id, task.url, task.line) == ("line-7", "/v1/chat/completions", 7)
    assert task.body == raw.strip()


def test_a_body_with_custom_id_is_sent_without_it() -> None:
    task = parse_line(line({"custom_id": "a", "model": "m", "prompt": "x", "max_tokens": 3}), 1)
    assert (task.custom_id, task.url) == ("a", "/v1/completions")
    assert orjson.loads(task.body) == {"model": "m", "prompt": "x", "max_tokens": 3}


def test_a_batch_api_line_is_accepted_as_is() -> None:
    document = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    task = parse_line(line(document), 3)
    assert (task.custom_id, task.url) == ("r1", "/v1/chat/completions")
    assert orjson.loads(task.body) == CHAT


def test_a_byte_order_mark_on_the_first_line_is_ignored() -> None:
    assert parse_line(b"\xef\xbb\xbf" + line(CHAT), 1).custom_id == "line-1"


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        ({"model": "m"}, "needs `messages` (chat) or `prompt`"),
        ({"model": "m", "messages": [], "prompt": "x"}, "not both"),
        ({**CHAT, "custom_id": ""}, "custom_id must be a non-empty string"),
        ({**CHAT, "custom_id": 5}, "custom_id must be a non-empty string"),
        ({"messages": CHAT["messages"]}, "body.model is required"),
        ({**CHAT, "stream": True}, "body.stream must be false or absent"),
        ({"model": "m", "messages": "hi"}, "body.messages must be a non-empty list"),
        ({"method": "POST", "url": "/v1/chat/completions", "body": CHAT}, "custom_id is required"),
        ({"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": CHAT}, "POST"),
        ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": CHAT}, "url must"),
        ({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": "x"}, "body"),
        ({"custom_id": "a", "url": "/v1/completions", "body": CHAT, "x": 1}, "unknown field 'x'"),
        (
            {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"model": "m"}},
            "body.prompt is required",
        ),
    ],
)
def test_an_invalid_line_names_what_is_wrong(document: object, says: str) -> None:
    raw = document if isinstance(document, bytes) else line(document)
    with pytest.raises(InvalidLine, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_line(raw, 1)
