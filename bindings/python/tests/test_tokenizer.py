"""Tokenizers and detokenizers against the results of ``tokenizers`` 0.23.3 (Tests/fixtures/tokenizers, made by
tools/make_tokenizer_fixtures.py), their special ids against the files they come from, and their errors and
lifetimes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import moert
from conftest import FIXTURES

TOKENIZERS = FIXTURES / "tokenizers"
CHAT = FIXTURES / "chat"
TOKENIZER_NAMES = sorted(p.name for p in TOKENIZERS.iterdir() if (p / "cases.jsonl").is_file())

# One tokenizer per fixture for the whole module: the real vocabularies take a moment to load.
_loaded: Dict[str, moert.Tokenizer] = {}


def fixture_tokenizer(name: str) -> moert.Tokenizer:
    if name not in _loaded:
        _loaded[name] = moert.Tokenizer(TOKENIZERS / name / "tokenizer.json")
    return _loaded[name]


def read_cases(name: str) -> List[Dict[str, Any]]:
    # Lines end in "\n" only: the texts hold other line separators (U+2028, ...) that splitlines() would cut at.
    lines = (TOKENIZERS / name / "cases.jsonl").read_text(encoding="utf-8").rstrip("\n").split("\n")
    return [dict(json.loads(line), line=number) for number, line in enumerate(lines, 1)]


CASES = [(name, case) for name in TOKENIZER_NAMES for case in read_cases(name)]


def test_every_fixture_has_cases() -> None:
    assert {"qwen2", "llama-spm", "bytelevel"} <= set(TOKENIZER_NAMES)
    assert len(CASES) > 1000


@pytest.mark.parametrize("name, case", CASES, ids=[f"{name}:{case['line']}" for name, case in CASES])
def test_case(name: str, case: Dict[str, Any]) -> None:
    """encode, decode and the detokenizer's pieces give what ``tokenizers`` gave for the case."""
    tokenizer = fixture_tokenizer(name)
    if not case.get("decode_only"):
        text = case["text"]
        assert tokenizer.encode(text) == case["ids"], "ids"
        assert tokenizer.encode(text.encode("utf-8")) == case["ids"], "ids from bytes"
        assert tokenizer.encode(text, add_special_tokens=True) == case["ids_special"], "ids_special"
        assert tokenizer.encode(text, parse_special_tokens=False) == case["ids_plain"], "ids_plain"
    assert tokenizer.decode(case["ids"]) == case["decoded"], "decoded"
    assert tokenizer.decode(case["ids"], skip_special_tokens=True) == case["decoded_skip"], "decoded_skip"
    with tokenizer.detokenizer() as detokenizer:
        pieces = [detokenizer.push(token) for token in case["ids"]]
        rest = detokenizer.flush()
    assert pieces == case["stream"], "DecodeStream pieces"
    # The pieces add up to the decoded text wherever tokenizers' own pieces do (a broken byte sequence followed by
    # more bytes makes decode rewrite text the stream already gave, in tokenizers as in moert).
    if case["decoded"].startswith("".join(case["stream"])):
        assert "".join(pieces) + rest == case["decoded"], "pieces and flush"


@pytest.mark.parametrize("name", ["qwen2", "llama-spm", "bytelevel"])
def test_skipping_detokenizer_adds_up_to_decode_without_special_tokens(name: str) -> None:
    """Where decoding more ids rewrites no text (no U+FFFD in the decoded text), the pieces of a detokenizer that
    skips special tokens add up to decode(ids, skip_special_tokens=True)."""
    tokenizer = fixture_tokenizer(name)
    checked = 0
    for case in read_cases(name):
        if "\ufffd" in case["decoded"]:
            continue
        with tokenizer.detokenizer(skip_special_tokens=True) as detokenizer:
            text = "".join(detokenizer.push(token) for token in case["ids"]) + detokenizer.flush()
        assert text == case["decoded_skip"], case["line"]
        checked += 1
    assert checked > 50


def added_tokens(name: str) -> Dict[str, int]:
    """The added tokens of a fixture's tokenizer.json, by content."""
    document = json.loads((TOKENIZERS / name / "tokenizer.json").read_text(encoding="utf-8"))
    return {token["content"]: token["id"] for token in document["added_tokens"]}


@pytest.mark.parametrize("name", ["qwen2", "llama-spm"])
def test_vocabulary(name: str) -> None:
    """n_vocab, pieces and ids against tokenizer.json itself."""
    document = json.loads((TOKENIZERS / name / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: Dict[str, int] = {**document["model"]["vocab"], **added_tokens(name)}
    tokenizer = fixture_tokenizer(name)
    assert tokenizer.n_vocab == max(vocab.values()) + 1
    for piece, token in list(vocab.items())[:: max(1, len(vocab) // 500)] + list(added_tokens(name).items()):
        assert tokenizer.token_to_piece(token) == piece
        assert tokenizer.piece_to_token(piece) == token
    assert tokenizer.token_to_piece(tokenizer.n_vocab) is None
    assert tokenizer.token_to_piece(-1) is None
    assert tokenizer.piece_to_token("no such piece in any vocabulary") is None


def test_a_file_has_no_special_or_stop_ids() -> None:
    tokenizer = fixture_tokenizer("qwen2")
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (None, None, None)
    assert tokenizer.stop_token_ids == ()


@pytest.fixture
def qwen2_dir(tmp_path: Path) -> Path:
    """A directory with the qwen2 tokenizer.json and the tokenizer_config.json of Tests/fixtures/chat/qwen2."""
    shutil.copy(TOKENIZERS / "qwen2" / "tokenizer.json", tmp_path)
    shutil.copy(CHAT / "qwen2" / "tokenizer_config.json", tmp_path)
    return tmp_path


def test_special_ids_of_a_directory(qwen2_dir: Path) -> None:
    """bos/eos/pad are the ids of tokenizer_config.json's tokens (transformers' special_tokens_map in
    special_tokens.json); the only stop id is the eos_token, as there is no generation_config.json or config.json."""
    special = json.loads((CHAT / "qwen2" / "special_tokens.json").read_text())
    ids = added_tokens("qwen2")
    with moert.Tokenizer(qwen2_dir) as tokenizer:
        assert tokenizer.bos_token_id is None and "bos_token" not in special
        assert tokenizer.eos_token_id == ids[special["eos_token"]]
        assert tokenizer.pad_token_id == ids[special["pad_token"]]
        assert tokenizer.stop_token_ids == (ids[special["eos_token"]],)


def test_stop_ids_come_from_generation_config_then_config_then_eos_token(qwen2_dir: Path) -> None:
    ids = added_tokens("qwen2")
    (qwen2_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": [ids["<|im_end|>"], 7]}))
    (qwen2_dir / "config.json").write_text(json.dumps({"eos_token_id": 7}))
    with moert.Tokenizer(qwen2_dir) as tokenizer:
        assert tokenizer.stop_token_ids == (ids["<|im_end|>"], 7, ids["<|endoftext|>"])


# Errors


def test_invalid_utf8_names_the_offset() -> None:
    tokenizer = fixture_tokenizer("qwen2")
    with pytest.raises(moert.InvalidArgumentError, match="byte 2"):
        tokenizer.encode(b"ab\xffcd")
    with pytest.raises(moert.InvalidArgumentError, match="byte 1"):
        tokenizer.encode("a\ud800b")  # a lone surrogate is not UTF-8 either


def test_encode_takes_text_or_bytes_only() -> None:
    tokenizer = fixture_tokenizer("qwen2")
    assert tokenizer.encode(bytearray(b"hello")) == tokenizer.encode(memoryview(b"hello")) == tokenizer.encode("hello")
    assert tokenizer.encode("") == []
    with pytest.raises(TypeError, match="str or bytes"):
        tokenizer.encode(42)  # type: ignore[arg-type]


def test_long_text_needs_more_ids_than_bytes() -> None:
    """Special tokens added after text of single-byte ids exceed the first buffer guess; encode asks again."""
    tokenizer = fixture_tokenizer("llama-spm")
    text = "\u00e9" * 40  # 80 bytes, each character its byte-fallback ids
    plain = tokenizer.encode(text)
    assert tokenizer.encode(text, add_special_tokens=True) == [1] + plain
    assert tokenizer.decode(plain) == text


def test_decode_errors() -> None:
    tokenizer = fixture_tokenizer("qwen2")
    with pytest.raises(moert.OutOfRangeError, match=str(tokenizer.n_vocab)):
        tokenizer.decode([1, tokenizer.n_vocab])
    with pytest.raises(moert.OutOfRangeError):
        tokenizer.decode([2**40])
    assert tokenizer.decode([]) == ""


def test_piece_with_a_nul_is_refused() -> None:
    with pytest.raises(moert.InvalidArgumentError, match="NUL"):
        fixture_tokenizer("qwen2").piece_to_token("a\0b")


def test_missing_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(moert.MoertIOError, match="tokenizer.json"):
        moert.Tokenizer(tmp_path)


def test_malformed_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(moert.FormatError):
        moert.Tokenizer(tmp_path)


def test_detokenizer_refuses_an_unknown_id_and_stays_unchanged() -> None:
    tokenizer = fixture_tokenizer("qwen2")
    case = read_cases("qwen2")[0]
    with tokenizer.detokenizer() as detokenizer:
        first = detokenizer.push(case["ids"][0])
        with pytest.raises(moert.OutOfRangeError):
            detokenizer.push(tokenizer.n_vocab)
        rest = [detokenizer.push(token) for token in case["ids"][1:]]
    assert [first] + rest == case["stream"]


def test_flush_starts_over() -> None:
    tokenizer = fixture_tokenizer("llama-spm")
    case = read_cases("llama-spm")[0]
    with tokenizer.detokenizer() as detokenizer:
        for _ in range(2):
            pieces = [detokenizer.push(token) for token in case["ids"]]
            assert pieces == case["stream"]
            assert detokenizer.flush() == ""


# Lifetimes


def test_closing_a_tokenizer_closes_its_detokenizers(qwen2_dir: Path) -> None:
    tokenizer = moert.Tokenizer(qwen2_dir)
    detokenizer = tokenizer.detokenizer()
    assert detokenizer.tokenizer is tokenizer and not detokenizer.closed
    tokenizer.close()
    tokenizer.close()
    assert tokenizer.closed and detokenizer.closed
    with pytest.raises(moert.InvalidArgumentError, match="Detokenizer is closed: its Tokenizer was closed"):
        detokenizer.push(1)
    for use in (lambda: tokenizer.encode("a"), lambda: tokenizer.n_vocab, lambda: tokenizer.detokenizer()):
        with pytest.raises(moert.InvalidArgumentError, match="Tokenizer is closed: it was closed"):
            use()
    assert "closed" in repr(tokenizer) and "closed" in repr(detokenizer)


def test_detokenizers_keep_their_tokenizer_alive(qwen2_dir: Path) -> None:
    vocab = json.loads((qwen2_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    detokenizer = moert.Tokenizer(qwen2_dir).detokenizer()
    assert detokenizer.push(vocab["Hello"]) == "Hello"
    detokenizer.close()
    detokenizer.close()


@pytest.fixture
def mixtral_with_tokenizer(tmp_path: Path) -> Iterator[Path]:
    """The Mixtral fixture's files with the qwen2 tokenizer beside them (the vocabularies differ; only loading is
    tested here)."""
    for source in (FIXTURES / "mixtral").iterdir():
        if not source.name.startswith(("tokenizer", "chat_template")):
            shutil.copy(source, tmp_path)
    shutil.copy(TOKENIZERS / "qwen2" / "tokenizer.json", tmp_path)
    yield tmp_path


def test_model_tokenizer_is_loaded_once_and_closed_with_the_model(mixtral_with_tokenizer: Path) -> None:
    model = moert.Model(mixtral_with_tokenizer)
    tokenizer = model.tokenizer
    assert model.tokenizer is tokenizer and tokenizer.path == str(mixtral_with_tokenizer)
    # The model directory's config.json and generation_config.json give the stop ids.
    config = json.loads((mixtral_with_tokenizer / "config.json").read_text())
    assert tokenizer.stop_token_ids == (config["eos_token_id"],) == model.eos_token_ids
    model.close()
    assert tokenizer.closed
    with pytest.raises(moert.InvalidArgumentError, match="its Model was closed"):
        tokenizer.decode([1])
    with pytest.raises(moert.InvalidArgumentError, match="Model is closed"):
        model.tokenizer


def test_model_tokenizer_is_loaded_again_after_close(mixtral_with_tokenizer: Path) -> None:
    with moert.Model(mixtral_with_tokenizer) as model:
        first = model.tokenizer
        first.close()
        assert model.tokenizer is not first and not model.tokenizer.closed


def test_model_without_tokenizer(tmp_path: Path) -> None:
    for source in (FIXTURES / "mixtral").iterdir():
        if not source.name.startswith(("tokenizer", "chat_template")):
            shutil.copy(source, tmp_path)
    with moert.Model(tmp_path) as model:
        with pytest.raises(moert.MoertIOError, match="no tokenizer.json"):
            model.tokenizer
        assert model.session().eval([1, 2]).shape == (model.info.vocab_size,)



def test_special_tokens_of_tokenizer_config_are_added_as_transformers_adds_them() -> None:
    """tokenizer_config.json names special tokens tokenizer.json does not list as added tokens: transformers'
    AutoTokenizer (Tests/fixtures/tokenizer-config/transformers_cases.jsonl) matches them in text, gives new ids to
    those outside the vocabulary and leaves them out of decode(skip_special_tokens=True)."""
    directory = FIXTURES / "tokenizer-config"
    lines = (directory / "transformers_cases.jsonl").read_text(encoding="utf-8").rstrip("\n").split("\n")
    meta, cases = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    with moert.Tokenizer(directory) as tokenizer:
        assert tokenizer.n_vocab == meta["n_vocab"]
        assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
            meta["bos"], meta["eos"], meta["pad"])
        assert len(cases) > 20
        for case in cases:
            assert tokenizer.encode(case["text"]) == case["ids"], case["text"]
            assert tokenizer.encode(case["text"], add_special_tokens=True) == case["ids_special"], case["text"]
            assert tokenizer.decode(case["ids"]) == case["decoded"], case["text"]
            assert tokenizer.decode(case["ids"], skip_special_tokens=True) == case["decoded_skip"], case["text"]
    # The tokenizer.json file alone has none of them: the bos text is two bytes there.
    with moert.Tokenizer(directory / "tokenizer.json") as alone:
        assert alone.n_vocab == 257 and alone.encode("\u0101") == [196, 129]
