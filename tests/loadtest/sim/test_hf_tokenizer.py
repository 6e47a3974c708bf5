"""A model's own tokenizer, read offline from a directory or the local Hugging Face cache,
counting prompts as vLLM does; and `vllm-sim serve --tokenizer` counting with it."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tokenizers import Tokenizer

from loadtest.sim.hf_tokenizer import TokenizerError, load_tokenizer
from tests.loadtest.sim.serving import MODEL, serve_argv
from tests.loadtest.tokenizer_dir import BOS, build_tokenizer
from tests.procs import Proc, bin_path

MESSAGES = [
    {"role": "system", "content": "be brief "},
    {"role": "user", "content": "  the cat sat on the yak "},
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tok") / "tiny-bpe")


def test_chat_renders_the_template_and_adds_no_special_tokens(tok_dir: Path) -> None:
    tok = load_tokenizer(str(tok_dir))
    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    text = tok.render_chat(MESSAGES)
    # Llama 3's template: BOS once, a header per message, content trimmed, the assistant header.
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nthe cat sat on the yak<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tok.chat(MESSAGES)
    assert ids == raw.encode(text, add_special_tokens=False).ids
    assert ids.count(raw.token_to_id(BOS)) == 1  # from the template, not added again


def test_special_tokens_may_come_as_added_token_objects(tmp_path: Path) -> None:
    """Older tokenizer files write {"content": ...} objects, some in special_tokens_map.json."""
    directory = build_tokenizer(tmp_path / "old-style")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    del config["bos_token"]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    special = {"bos_token": {"content": BOS, "lstrip": False, "__type": "AddedToken"}}
    (directory / "special_tokens_map.json").write_text(json.dumps(special))
    tok = load_tokenizer(str(directory))
    assert tok.special_tokens["bos_token"] == BOS
    assert tok.render_chat([{"role": "user", "content": "x"}]).startswith(BOS)


def test_completion_adds_the_special_tokens(tok_dir: Path) -> None:
    tok = load_tokenizer(str(tok_dir))
    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    ids = tok.completion("the cat sat")
    assert ids[0] == raw.token_to_id(BOS)
    assert ids[1:] == raw.encode("the cat sat", add_special_tokens=False).ids


def test_batch_counts_equal_one_by_one(tok_dir: Path) -> None:
    tok = load_tokenizer(str(tok_dir))
    texts = ["", "the", "  padded yak oar  ", "caf\u00e9 \u4e2d\u6587 tea " * 20]
    chat = [len(tok.chat([{"role": "user", "content": t}])) for t in texts]
    assert tok.count(texts, "chat") == chat
    assert tok.count(texts, "completions") == [len(tok.completion(t)) for t in texts]
    assert len(set(chat)) == len(texts)  # the texts really differ in length


def test_a_template_that_changes_the_content_is_rendered_per_text(tmp_path: Path) -> None:
    directory = build_tokenizer(tmp_path / "upper")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}{% generation %}<{{ m['content'] | upper }}>"
        "{% endgeneration %}{% endfor %}"
    )
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(str(directory))
    assert tok.render_chat([{"role": "user", "content": "ab"}]) == "<AB>"
    texts = ["ab", "the cat"]
    assert tok.count(texts, "chat") == [
        len(tok.chat([{"role": "user", "content": t}])) for t in texts
    ]


def test_a_model_name_is_read_from_the_local_cache_offline(tok_dir: Path, tmp_path: Path) -> None:
    """The Hugging Face cache layout: models--org--name/snapshots/<rev>/, refs/main."""
    repo = tmp_path / "hub" / "models--acme--tiny-chat"
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (snapshot / name).write_bytes((tok_dir / name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    code = (
        "from loadtest.sim.hf_tokenizer import load_tokenizer\n"
        "t = load_tokenizer('acme/tiny-chat')\n"
        "print(t.directory, len(t.chat([{'role': 'user', 'content': 'the cat'}])))\n"
    )
    env = {
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # a closed port: any hub call would fail
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    directory, count = done.stdout.split()
    assert Path(directory) == snapshot
    assert int(count) == len(
        load_tokenizer(str(tok_dir)).chat([{"role": "user", "content": "the cat"}])
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("./no/such/dir", "no such directory"),
        ("acme/not-cached", "not in the local Hugging Face cache"),
    ],
)
def test_a_tokenizer_that_is_not_there_is_a_clear_error(
    name: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TokenizerError, match=message):
        load_tokenizer(name)


def test_a_directory_without_tokenizer_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(TokenizerError, match=r"no tokenizer\.json"):
        load_tokenizer(str(tmp_path))


def test_vllm_sim_counts_prompts_with_the_tokenizer(
    spawn: Callable[..., Proc], tok_dir: Path
) -> None:
    sim = spawn(serve_argv("--tokenizer", str(tok_dir)))
    tok = load_tokenizer(str(tok_dir))
    messages = [{"role": "user", "content": "the cat sat on the yak " * 7}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 3}
    chat = httpx.post(sim.url + "/v1/chat/completions", json=body, timeout=10).json()
    assert chat["usage"]["prompt_tokens"] == len(tok.chat(messages))
    body = {"model": MODEL, "prompt": "the cat sat", "max_tokens": 2}
    completion = httpx.post(sim.url + "/v1/completions", json=body, timeout=10).json()
    assert completion["usage"]["prompt_tokens"] == len(tok.completion("the cat sat"))
    assert httpx.get(sim.url + "/version", timeout=5).json()["tokenizer"] == str(tok_dir)


def test_vllm_sim_refuses_a_missing_tokenizer(tmp_path: Path) -> None:
    argv = [bin_path("vllm-sim"), "serve", "--model", "m", "--tokenizer", str(tmp_path / "x")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--tokenizer" in done.stderr and "no such directory" in done.stderr
