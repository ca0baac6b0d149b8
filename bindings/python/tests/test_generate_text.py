"""Text generation: Session.generate_text and its TextStream, and generate_all with a tokenizer and stop strings.

Expected values come from paths that do not go through generate_text: Session.generate on the ids of
Tokenizer.encode (or, for the byte-level vocabulary of the Mixtral fixture, where id b is byte b, the UTF-8 bytes of
the text), Tokenizer.decode of the generated ids, transformers' greedy ids (reference.safetensors), and "chain"
models whose weights are written here so that greedy generation follows a known sequence of bytes.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import pytest

import moert
from conftest import fixture_dir, read_safetensors, reference, write_safetensors

MIXTRAL = fixture_dir("mixtral")
BOS = 1  # config.json's bos_token_id, tokenizer_config.json's bos_token "ā" (byte 1)
EOS = 2  # config.json's eos_token_id, tokenizer_config.json's eos_token "Ă" (byte 2)
IN_USE = "in use by another call"


def utf8(text: str) -> List[int]:
    """The ids of `text` in the Mixtral fixture's byte-level vocabulary: its UTF-8 bytes."""
    return list(text.encode("utf-8"))


def mixtral_template(messages: Sequence[Dict[str, str]], add_generation_prompt: bool = True) -> str:
    """What the Mixtral fixture's chat template writes (tokenizer_config.json: '<' + role + '>' + content + '\\n'
    per message, then '<assistant>')."""
    text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
    return text + ("<assistant>" if add_generation_prompt else "")


# Chain models: the Mixtral fixture with attention and expert outputs zeroed, so that the last hidden state is the
# embedding of the last token and greedy generation follows a fixed successor of each token.


def chain(start: Union[int, str], text: str, end: int = EOS) -> Dict[int, int]:
    """Successors that make a chain model answer `text` after the token `start` (a byte or a one-byte str), then
    `end`. Each byte may have one successor only."""
    first = ord(start) if isinstance(start, str) else start
    sequence = [first] + utf8(text) + [end]
    successor: Dict[int, int] = {}
    for token, following in zip(sequence, sequence[1:]):
        assert successor.get(token, following) == following, f"byte {token} would need two successors"
        successor[token] = following
    return successor


def write_chain_model(
    path: Path,
    successor: Dict[int, int],
    default: int = EOS,
    tokenizer_config: Optional[Dict[str, Any]] = None,
    generation_eos: Optional[List[int]] = None,
    special_eos: bool = True,
    bos_first: bool = False,
) -> Path:
    """A model directory whose greedy next token after token t is successor[t] (`default` for other tokens), with
    the fixture's tokenizer in which, as in real vocabularies, the EOS is a special token (unless not `special_eos`);
    with `bos_first`, its post-processor puts the BOS (id 1) first when special tokens are added, as Llama's does.

    Each token of `successor` gets its own embedding direction and the LM head maps that direction to the successor
    with a logit of 100 * sqrt(hidden) after the final RMSNorm (of weight 1); all other tokens share one more
    direction that maps to `default`. With o_proj and every expert's w2 zero, the residual stream stays the
    embedding, so the logits depend on the last token only: a margin far beyond any sampling temperature used here.
    """
    path.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(MIXTRAL / name, path)
    tensors = read_safetensors(MIXTRAL / "model.safetensors")
    embed = np.zeros_like(tensors["model.embed_tokens.weight"])
    head = np.zeros_like(tensors["lm_head.weight"])
    hidden = embed.shape[1]
    assert len(successor) < hidden
    embed[:, hidden - 1] = 1.0
    head[default, hidden - 1] = 100.0
    for direction, (token, following) in enumerate(successor.items()):
        embed[token] = 0.0
        embed[token, direction] = 1.0
        head[following, direction] = 100.0
    tensors["model.embed_tokens.weight"] = embed
    tensors["lm_head.weight"] = head
    tensors["model.norm.weight"] = np.ones_like(tensors["model.norm.weight"])
    for name in tensors:
        if name.endswith(("self_attn.o_proj.weight", ".w2.weight")):
            tensors[name] = np.zeros_like(tensors[name])
    write_safetensors(path / "model.safetensors", tensors)
    if tokenizer_config is not None:
        (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if generation_eos is not None:
        generation = json.loads((path / "generation_config.json").read_text())
        generation["eos_token_id"] = generation_eos
        (path / "generation_config.json").write_text(json.dumps(generation))
    if special_eos:
        # The EOS byte as a special added token, as real vocabularies have their EOS (the vocabulary keeps it too,
        # as Llama's "<s>"): skip_special_tokens then leaves it out.
        document = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        piece = next(p for p, i in document["model"]["vocab"].items() if i == EOS)
        document["added_tokens"] = [{"id": EOS, "content": piece, "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": True}]
        (path / "tokenizer.json").write_text(json.dumps(document, ensure_ascii=False))
    if bos_first:
        document = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        bos = next(p for p, i in document["model"]["vocab"].items() if i == BOS)
        document["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [BOS], "tokens": [bos]}},
        }
        (path / "tokenizer.json").write_text(json.dumps(document, ensure_ascii=False))
    return path


ChainFactory = Callable[..., moert.Model]


@pytest.fixture
def chain_model(tmp_path: Path) -> Iterator[ChainFactory]:
    """Makes chain models (see write_chain_model), closed after the test."""
    models: List[moert.Model] = []

    def make(successor: Dict[int, int], **options: Any) -> moert.Model:
        model = moert.Model(write_chain_model(tmp_path / f"chain{len(models)}", successor, **options))
        models.append(model)
        return model

    yield make
    for model in models:
        model.close()


def run(stream: moert.TextStream) -> List[str]:
    """Every piece of a stream, each checked to be non-empty text."""
    pieces = list(stream)
    assert all(isinstance(piece, str) and piece for piece in pieces)
    return pieces


def test_chain_models_generate_their_chain(chain_model: ChainFactory) -> None:
    """The premise of the chain tests, checked with Session.generate alone."""
    model = chain_model(chain("#", "abc"))
    with model.session() as session:
        assert list(session.generate(utf8("xy#"), 10)) == utf8("abc") + [EOS]
        session.reset()
        assert list(session.generate(utf8("q"), 3, ignore_eos=True)) == [EOS, EOS, EOS]


# Plain prompts on the Mixtral fixture (random weights: the text is noise, but the ids are those of generate)


@pytest.mark.parametrize("prompt", ["Hello", "Grüße, 世界! 👋", "a\nb\tc"])
@pytest.mark.parametrize("ignore_eos", [False, True])
def test_plain_prompt_generates_as_generate_on_its_encoding(mixtral: moert.Model, prompt: str,
                                                           ignore_eos: bool) -> None:
    tokenizer = mixtral.tokenizer
    ids = tokenizer.encode(prompt, add_special_tokens=True)
    assert ids == utf8(prompt)  # the byte-level vocabulary of the fixture, no post-processor
    with mixtral.session() as texts, mixtral.session() as tokens:
        stream = texts.generate_text(prompt, max_new_tokens=24, ignore_eos=ignore_eos)
        pieces = run(stream)
        expected = list(tokens.generate(ids, 24, ignore_eos=ignore_eos))
        assert stream.tokens == expected
        assert "".join(pieces) == tokenizer.decode(expected, skip_special_tokens=True)
        assert texts.n_past == tokens.n_past == len(ids) + len(expected)


def test_special_tokens_are_added_to_plain_prompts_only(chain_model: ChainFactory) -> None:
    """A str prompt is encoded with add_special_tokens=True (a BOS first, here); a chat is not: its template writes
    the special tokens."""
    model = chain_model({**chain("#", "ok"), **chain(">", "hey")}, bos_first=True)
    tokenizer = model.tokenizer
    assert tokenizer.encode("a#", add_special_tokens=True) == [BOS] + utf8("a#")
    with model.session() as session:
        plain = session.generate_text("a#", 10)
        assert "".join(run(plain)) == "ok"
        assert session.n_past == 1 + 2 + len(plain.tokens)
        session.reset()
        assert list(session.generate([BOS] + utf8("a#"), 10)) == plain.tokens
        session.reset()
        chat = session.generate_text("a#", 10, chat=True)
        assert "".join(run(chat)) == "hey"
        assert session.n_past == len(utf8(mixtral_template([{"role": "user", "content": "a#"}]))) + len(chat.tokens)
        session.reset()
        ids = session.generate_text(utf8("a#"), 10)  # ids are taken as they are
        run(ids)
        assert session.n_past == 2 + len(ids.tokens)


def test_bytes_prompt_is_its_utf8_text(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        from_bytes = session.generate_text("é ok".encode("utf-8"), 6)
        run(from_bytes)
        session.reset()
        from_text = session.generate_text("é ok", 6)
        run(from_text)
    assert from_bytes.tokens == from_text.tokens


def test_token_prompt_generates_transformers_greedy_ids(mixtral: moert.Model) -> None:
    ref = reference("mixtral")
    greedy = ref["greedy"].tolist()
    with mixtral.session() as session:
        stream = session.generate_text(ref["prompt"], max_new_tokens=len(greedy), ignore_eos=True)
        pieces = run(stream)
    assert stream.tokens == greedy
    assert "".join(pieces) == mixtral.tokenizer.decode(greedy, skip_special_tokens=True)


@pytest.mark.parametrize("seed", [0, 7])
def test_sampled_text_generation_equals_the_library_loop(mixtral: moert.Model, seed: int) -> None:
    tokenizer = mixtral.tokenizer
    with mixtral.session() as session:
        stream = session.generate_text("Once upon", 20, temperature=0.9, top_k=40, seed=seed, ignore_eos=True)
        text = "".join(run(stream))
        session.reset()
        native = session.generate_all(utf8("Once upon"), 20, temperature=0.9, top_k=40, seed=seed, ignore_eos=True,
                                      tokenizer=tokenizer)
    assert stream.tokens == native and len(native) == 20
    assert text == tokenizer.decode(native, skip_special_tokens=True)


def test_the_stream_is_lazy_and_its_tokens_grow_as_pieces_come(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        stream = session.generate_text("Hi", 12, ignore_eos=True)
        assert session.n_past == 0 and stream.tokens == []
        seen = []
        for piece in stream:
            seen.append((len(stream.tokens), session.n_past))
        assert len(stream.tokens) == 12 and session.n_past == 2 + 12
    # A piece made by an id comes before the id is fed back; only text held back to the end (flushed) comes after.
    assert all(n_past == 2 + n_tokens - 1 for n_tokens, n_past in seen[:-1])
    assert seen[-1][1] in (2 + seen[-1][0] - 1, 2 + 12)
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)


# UTF-8: pieces end on character boundaries


def test_pieces_never_split_a_character(chain_model: ChainFactory) -> None:
    """Each id is one byte: the text arrives in whole characters, each yielded with the id that completes it."""
    answer = "é€😀"
    prompt = "→ "  # multi-byte prompt too; it ends with the space the chain starts from
    model = chain_model(chain(" ", answer))
    with model.session() as session:
        stream = session.generate_text(prompt, 20)
        completed = []
        pieces = []
        for piece in stream:
            pieces.append(piece)
            completed.append(len(stream.tokens))
    assert pieces == ["é", "€", "😀"]
    assert completed == [2, 5, 9]  # é is 2 bytes, € 3, 😀 4
    assert stream.tokens == utf8(answer) + [EOS]


def test_pieces_of_every_prefix_are_whole_characters(chain_model: ChainFactory) -> None:
    answer = "añ€𝄞b"
    model = chain_model(chain("#", answer))
    with model.session() as session:
        stream = session.generate_text("#", 20)
        text = ""
        for piece in stream:
            text += piece
            # Whatever has been yielded so far is exactly the decoded bytes so far, never part of a character.
            assert text.encode("utf-8") == bytes(stream.tokens)
    assert text == answer


def test_a_character_cut_off_by_max_new_tokens_is_flushed_as_a_replacement(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "a€"))
    with model.session() as session:
        stream = session.generate_text("#", 3)  # a, then 2 of the 3 bytes of €
        pieces = run(stream)
    assert stream.tokens == utf8("a€")[:3]
    assert pieces == ["a", "\ufffd"]
    assert "".join(pieces) == model.tokenizer.decode(stream.tokens)


# Chat prompts


def test_chat_prompt_with_a_system_message(chain_model: ChainFactory) -> None:
    model = chain_model(chain(">", "Hi, you!"))  # the template ends with "<assistant>"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]
    rendered = mixtral_template(messages)
    with model.session() as session:
        stream = session.generate_text("Hello?", 30, chat=True, system="Be brief.")
        pieces = run(stream)
        assert session.n_past == len(utf8(rendered)) + len(stream.tokens)
        session.reset()
        expected = list(session.generate(utf8(rendered), 30))
    assert stream.tokens == expected == utf8("Hi, you!") + [EOS]
    assert "".join(pieces) == model.tokenizer.decode(expected, skip_special_tokens=True)


def test_chat_prompt_without_system_on_the_fixture(mixtral: moert.Model) -> None:
    rendered = mixtral_template([{"role": "user", "content": "Tell me."}])
    with mixtral.session() as texts, mixtral.session() as tokens:
        stream = texts.generate_text("Tell me.", 10, chat=True)
        run(stream)
        assert stream.tokens == list(tokens.generate(utf8(rendered), 10))
        assert texts.n_past == tokens.n_past


def test_a_list_of_messages_is_a_conversation(mixtral: moert.Model) -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2 ✓"},
    ]
    rendered = mixtral_template(messages)
    with mixtral.session() as texts, mixtral.session() as tokens:
        stream = texts.generate_text(messages, 10, ignore_eos=True)
        text = "".join(run(stream))
        expected = list(tokens.generate(utf8(rendered), 10, ignore_eos=True))
        assert stream.tokens == expected
        assert text == mixtral.tokenizer.decode(expected, skip_special_tokens=True)
        # A tuple of messages too, and the same ids as model.apply_chat_template encoded without special tokens.
        texts.reset()
        again = texts.generate_text(tuple(messages), 10, ignore_eos=True)
        run(again)
    assert again.tokens == expected
    assert mixtral.tokenizer.encode(mixtral.apply_chat_template(messages), add_special_tokens=False) == utf8(rendered)


def test_chat_template_kwargs_reach_the_template(chain_model: ChainFactory) -> None:
    """Variables and template_name through chat_template_kwargs: the template's last byte picks the answer."""
    config = {
        "eos_token": "Ă",
        "chat_template": [
            {"name": "default", "template": "{{ messages[-1]['content'] }}{% if loud %}!{% else %}?{% endif %}"},
            {"name": "other", "template": "{{ messages[-1]['content'] }}="},
        ],
    }
    successor = {**chain("!", "LOUD"), **chain("?", "soft"), **chain("=", "named")}
    model = chain_model(successor, tokenizer_config=config)

    def answer(**options: Any) -> str:
        with model.session() as session:
            return "".join(run(session.generate_text("x", 10, **options)))

    assert answer(chat=True) == "soft"
    assert answer(chat=True, chat_template_kwargs={"loud": True}) == "LOUD"
    assert answer(chat=True, chat_template_kwargs={"template_name": "other"}) == "named"
    messages = [{"role": "user", "content": "x"}]
    with model.session() as session:
        stream = session.generate_text(messages, 10, chat_template_kwargs={"loud": False})
        assert "".join(run(stream)) == "soft"


# Stopping


STOP_CASES = [
    # (stop, prompt, expected answer); the chain answers "abcXYZdef" after "#", then EOS
    ("XYZ", "#", "abcXYZ"),
    ("Z", "#", "abcXYZ"),
    (["nope", "cX"], "#", "abcX"),
    (("f",), "#", "abcXYZdef"),
    ("a", "#", "a"),
    ("never", "#", None),
    ("", "#", None),  # empty stop strings are ignored
    ("XYZ", "XYZ#", "abcXYZ"),  # the prompt's text does not count
    ("#a", "#", None),  # nor does a match that starts in the prompt
]


@pytest.mark.parametrize("stop, prompt, answer", STOP_CASES, ids=[repr(c[0]) + " " + c[1] for c in STOP_CASES])
def test_stop_strings(chain_model: ChainFactory, stop: Any, prompt: str, answer: Optional[str]) -> None:
    """Generation ends after the id that completes a stop string, whose text is part of the output; generate_all
    with the tokenizer and the same stop strings makes the same ids and leaves the session in the same state."""
    model = chain_model(chain("#", "abcXYZdef"))
    tokenizer = model.tokenizer
    expected = utf8("abcXYZdef") + [EOS] if answer is None else utf8(answer)
    with model.session() as texts, model.session() as tokens:
        stream = texts.generate_text(prompt, 30, stop=stop)
        text = "".join(run(stream))
        assert stream.tokens == expected
        assert text == tokenizer.decode(expected, skip_special_tokens=True)
        if answer is not None:
            strings = [stop] if isinstance(stop, str) else list(stop)
            assert any(text.endswith(s) for s in strings)
        native = tokens.generate_all(utf8(prompt), 30, tokenizer=tokenizer, stop=stop)
        assert native == expected
        assert texts.n_past == tokens.n_past == len(utf8(prompt)) + len(expected)


MULTIBYTE_STOPS = [("€", "é€"), ("é€", "é€"), ("😀", "é€😀"), (["x", "\U0001F600"], "é€😀")]


@pytest.mark.parametrize("stop, answer", MULTIBYTE_STOPS)
def test_multibyte_stop_strings(chain_model: ChainFactory, stop: Any, answer: str) -> None:
    """A stop string of several bytes is complete with the id of its last byte, not before."""
    model = chain_model(chain("#", "é€😀!"))
    with model.session() as texts, model.session() as tokens:
        stream = texts.generate_text("#", 30, stop=stop)
        assert "".join(run(stream)) == answer
        assert stream.tokens == utf8(answer)
        assert tokens.generate_all(utf8("#"), 30, tokenizer=model.tokenizer, stop=stop) == utf8(answer)


def test_stop_strings_still_apply_with_ignore_eos(chain_model: ChainFactory) -> None:
    successor = {**chain("#", "ab"), EOS: ord("c"), ord("c"): EOS}  # after EOS: c, EOS, c, ...
    model = chain_model(successor)
    with model.session() as session:
        stream = session.generate_text("#", 30, ignore_eos=True, stop="c")
        run(stream)
        assert stream.tokens == utf8("ab") + [EOS, ord("c")]
        session.reset()
        native = session.generate_all(utf8("#"), 30, ignore_eos=True, tokenizer=model.tokenizer, stop="c")
    assert native == stream.tokens


def test_ignore_eos_goes_on_to_max_new_tokens(chain_model: ChainFactory) -> None:
    successor = {**chain("#", "ab"), EOS: ord("c"), ord("c"): EOS}
    model = chain_model(successor)
    expected = utf8("ab") + [EOS, ord("c")] * 4 + [EOS]
    with model.session() as texts, model.session() as tokens:
        stopped = texts.generate_text("#", 11)
        run(stopped)
        assert stopped.tokens == utf8("ab") + [EOS]
        texts.reset()
        stream = texts.generate_text("#", 11, ignore_eos=True)
        text = "".join(run(stream))
        assert stream.tokens == expected
        assert text == model.tokenizer.decode(expected, skip_special_tokens=True)
        assert tokens.generate_all(utf8("#"), 11, ignore_eos=True, tokenizer=model.tokenizer) == expected
        assert texts.n_past == tokens.n_past == 1 + len(expected)


def test_the_tokenizers_stop_ids_end_text_generation(chain_model: ChainFactory) -> None:
    """generation_config.json's eos_token_id list names stop ids that config.json does not: the tokenizer's stop ids
    include them, and generate_text and generate_all(tokenizer=...) stop there (not with ignore_eos)."""
    model = chain_model(chain("#", "ab!cd"), generation_eos=[EOS, ord("!")])
    assert model.eos_token_ids == model.tokenizer.stop_token_ids == (EOS, ord("!"))
    with model.session() as texts, model.session() as tokens:
        stream = texts.generate_text("#", 20)
        assert "".join(run(stream)) == "ab!"
        assert tokens.generate_all(utf8("#"), 20, tokenizer=model.tokenizer) == utf8("ab!")
        assert texts.n_past == tokens.n_past == 1 + 3
        texts.reset()
        tokens.reset()
        ignoring = texts.generate_text("#", 6, ignore_eos=True)
        run(ignoring)
        assert ignoring.tokens == utf8("ab!cd") + [EOS]
        assert tokens.generate_all(utf8("#"), 6, ignore_eos=True, tokenizer=model.tokenizer) == ignoring.tokens


def test_generate_and_generate_all_stop_at_the_same_ids(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "ab!cd"), generation_eos=[EOS, ord("!")])
    with model.session() as iterated, model.session() as native:
        assert list(iterated.generate(utf8("#"), 20)) == native.generate_all(utf8("#"), 20) == utf8("ab!")


def test_special_tokens_are_left_out_of_the_text_unless_asked(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "ok"))
    tokenizer = model.tokenizer
    with model.session() as session:
        stream = session.generate_text("#", 10)
        skipped = "".join(run(stream))
        session.reset()
        kept_stream = session.generate_text("#", 10, skip_special_tokens=False)
        kept = "".join(run(kept_stream))
    assert stream.tokens == kept_stream.tokens == utf8("ok") + [EOS]
    assert skipped == tokenizer.decode(stream.tokens, skip_special_tokens=True) == "ok"
    assert kept == tokenizer.decode(stream.tokens) == "ok\x02"


def test_the_context_filling_up_ends_the_stream(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abcdefgh"))
    with model.session(n_ctx=6) as session:
        stream = session.generate_text("x#", 30)
        assert "".join(run(stream)) == "abcde"
        assert session.n_past == 6  # the last id is not evaluated: there is no room
        session.reset()
        assert session.generate_all(utf8("x#"), 30, tokenizer=model.tokenizer) == utf8("abcde")


# max_new_tokens=0, continuing, closing early


def test_zero_new_tokens_only_evaluates_the_prompt(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abc"))
    with model.session() as session:
        stream = session.generate_text("xy#", 0)
        assert session.n_past == 0
        assert run(stream) == [] and stream.tokens == []
        assert session.n_past == 3
        # The session continues from the prompt (its last logits are computed again).
        follow = session.generate_text([], 2)
        assert "".join(run(follow)) == "ab"


def test_an_empty_prompt_continues_a_finished_generation(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abcXYZ"))
    with model.session() as session:
        first = session.generate_text("#", 3)
        assert "".join(run(first)) == "abc"
        second = session.generate_text([], 3)
        assert "".join(run(second)) == "XYZ"
        assert session.n_past == 7
        # After the library's loop too, whose last logits stay inside moert.
        session.reset()
        assert session.generate_all(utf8("#"), 10, tokenizer=model.tokenizer, stop="b") == utf8("ab")
        assert "".join(run(session.generate_text([], 2))) == "cX"


def test_closing_a_stream_early_leaves_the_session_usable(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abcXYZ"))
    with model.session() as session:
        stream = session.generate_text("#", 20)
        assert next(stream) == "a" and next(stream) == "b"
        stream.close()
        stream.close()
        with pytest.raises(StopIteration):
            next(stream)
        assert stream.tokens == utf8("ab")
        # As with generate: the last id yielded has not been fed back.
        assert session.n_past == 1 + 1
        rest = session.generate_text([stream.tokens[-1]], 20)
        assert "".join(run(rest)) == "cXYZ"
        session.reset()
        assert list(session.generate(utf8("#"), 3)) == utf8("abc")


def test_breaking_out_of_the_loop_and_dropping_the_stream(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abcXYZ"))
    tokenizer = model.tokenizer
    with model.session() as session:
        stream = session.generate_text("#", 20, stop="Z")
        for piece in stream:
            if piece == "c":
                break
        del stream, piece
        assert not tokenizer._detokenizers  # the stream's detokenizers are freed with it
        session.reset()
        assert "".join(run(session.generate_text("#", 20))) == "abcXYZ"


def test_closing_a_stream_before_it_starts_frees_it(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abc"))
    tokenizer = model.tokenizer
    with model.session() as session:
        stream = session.generate_text("#", 20, stop="c")
        assert len(tokenizer._detokenizers) == 2  # the text's and the stop strings' watch
        stream.close()
        assert not tokenizer._detokenizers
        with pytest.raises(StopIteration):
            next(stream)
        assert stream.tokens == [] and session.n_past == 0
        assert "".join(run(session.generate_text("#", 20))) == "abc"


def test_a_finished_stream_frees_its_detokenizers(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "abc"))
    with model.session() as session:
        stream = session.generate_text("#", 20, stop="b")
        run(stream)
        assert not model.tokenizer._detokenizers


def test_closing_the_model_during_a_stream(mixtral: moert.Model) -> None:
    session = mixtral.session()
    stream = session.generate_text("Hi", 8, ignore_eos=True)
    next(stream)
    mixtral.close()
    with pytest.raises(moert.InvalidArgumentError, match="closed"):
        list(stream)
    stream.close()


# Errors: raised by the call, before anything is evaluated


ERRORS = [
    (dict(prompt="hi", system="S"), moert.InvalidArgumentError, "chat=True"),
    (dict(prompt="hi", chat_template_kwargs={"x": 1}), moert.InvalidArgumentError, "chat=True"),
    (dict(prompt=[1, 2], chat=True), moert.InvalidArgumentError, "str prompt or a list of messages"),
    (dict(prompt=[1, 2], system="S"), moert.InvalidArgumentError, "str prompt or a list of messages"),
    (dict(prompt=[{"role": "user", "content": "x"}], system="S"), moert.InvalidArgumentError, "system message"),
    (dict(prompt=b"hi", chat=True), TypeError, "chat prompt must be a str"),
    (dict(prompt="hi", stop=["ok", 3]), TypeError, "stop strings must be str"),
    (dict(prompt="hi", max_new_tokens=-1), moert.InvalidArgumentError, "max_new_tokens"),
    (dict(prompt="hi", temperature=-1.0), moert.InvalidArgumentError, None),
    (dict(prompt="hi", top_p=0.0), moert.InvalidArgumentError, None),
    (dict(prompt=""), moert.InvalidArgumentError, "nothing to continue"),
    (dict(prompt=[]), moert.InvalidArgumentError, "nothing to continue"),
    (dict(prompt=b"\xff"), moert.InvalidArgumentError, "UTF-8"),
    (dict(prompt=[{"role": "user", "content": b"x"}]), TypeError, "JSON serializable"),
]

ERROR_IDS = ["system-without-chat", "kwargs-without-chat", "chat-with-ids", "system-with-ids", "system-with-messages",
             "bytes-chat", "stop-not-str", "negative-max", "negative-temperature", "top-p-zero", "empty-text",
             "empty-ids", "invalid-utf8", "message-not-json"]

@pytest.mark.parametrize("arguments, error, message", ERRORS, ids=ERROR_IDS)
def test_bad_arguments_raise_at_the_call(mixtral: moert.Model, arguments: Dict[str, Any], error: type,
                                         message: Optional[str]) -> None:
    with mixtral.session() as session:
        with pytest.raises(error) as raised:
            session.generate_text(**arguments)
        if message is not None:
            assert message in str(raised.value)
        assert session.n_past == 0
        assert not mixtral.tokenizer._detokenizers
        run(session.generate_text("ok", 2))  # still usable


def test_errors_of_evaluation_come_with_the_first_piece(mixtral: moert.Model) -> None:
    """As with generate, ids outside the vocabulary are found when the prompt is evaluated, by the first next()."""
    with mixtral.session() as session:
        stream = session.generate_text([1, 256], 4)
        with pytest.raises(moert.OutOfRangeError):
            next(stream)
        assert session.n_past == 0 and stream.tokens == []
        assert not mixtral.tokenizer._detokenizers
        run(session.generate_text([1, 255], 2))


def test_stop_strings_may_hold_any_character_in_python_but_not_nul_in_c(chain_model: ChainFactory) -> None:
    model = chain_model(chain("#", "a\0b"))
    with model.session() as session:
        stream = session.generate_text("#", 10, stop="\0b")
        assert "".join(run(stream)) == "a\0b"
        session.reset()
        with pytest.raises(moert.InvalidArgumentError, match="NUL"):
            session.generate_all(utf8("#"), 10, tokenizer=model.tokenizer, stop="\0b")


def test_stop_strings_on_the_library_loop_need_a_tokenizer(mixtral: moert.Model) -> None:
    with mixtral.session() as session:
        with pytest.raises(moert.InvalidArgumentError, match="tokenizer"):
            session.generate_all([1, 2, 3], 4, stop="x")
        with pytest.raises(TypeError, match="stop strings must be str"):
            session.generate_all([1, 2, 3], 4, tokenizer=mixtral.tokenizer, stop=[b"x"])
        # Empty stop strings are ignored, so none is left to need a tokenizer.
        ignored = session.generate_all([1, 2, 3], 4, stop=[""], ignore_eos=True)
        session.reset()
        assert ignored == list(session.generate([1, 2, 3], 4, ignore_eos=True))


def test_a_model_without_a_tokenizer(tmp_path: Path) -> None:
    for source in MIXTRAL.iterdir():
        if not source.name.startswith("tokenizer"):
            shutil.copy(source, tmp_path)
    with moert.Model(tmp_path) as model, model.session() as session:
        with pytest.raises(moert.MoertIOError, match="tokenizer.json"):
            session.generate_text("hi", 2)
        assert session.n_past == 0


def test_a_chat_prompt_needs_a_chat_template(tmp_path: Path) -> None:
    for source in MIXTRAL.iterdir():
        shutil.copy(source, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with moert.Model(tmp_path) as model, model.session() as session:
        with pytest.raises(moert.UnsupportedError, match="no chat template"):
            session.generate_text("hi", 2, chat=True)
        assert session.n_past == 0
        stream = session.generate_text("hi", 2)  # a plain prompt needs no template
        run(stream)
        assert len(stream.tokens) == 2


# Threads: a stream's step runs on the session like any other call


class BlockingRouter(moert.Router):
    """Top-1 on expert 0; when armed, the next route() call signals `entered` and waits for `release`."""

    armed = False
    entered = threading.Event()
    release = threading.Event()
    reentrant: Optional[Callable[[], Any]] = None
    seen: List[BaseException] = []

    def __init__(self, layer: moert.LayerInfo, context: moert.CreateContext) -> None:
        super().__init__(layer, context)
        self.max_experts_per_token = 1

    def route(self, x: np.ndarray, token_ids: np.ndarray, positions: np.ndarray, batch: moert.RouterBatch) -> Any:
        if BlockingRouter.armed:
            BlockingRouter.armed = False
            BlockingRouter.entered.set()
            BlockingRouter.release.wait(30)
        if BlockingRouter.reentrant is not None:
            call, BlockingRouter.reentrant = BlockingRouter.reentrant, None
            try:
                call()
            except moert.InvalidArgumentError as e:
                BlockingRouter.seen.append(e)
                raise
        n = x.shape[0]
        return np.zeros((n, 1), dtype=np.int32), np.ones((n, 1), dtype=np.float32)


def _blocking_router() -> str:
    if "py_text_blocking" not in moert.router_kinds():
        moert.register_router("py_text_blocking", BlockingRouter)
    return "py_text_blocking"


def test_a_stream_step_in_progress_refuses_other_calls(mixtral: moert.Model) -> None:
    """While a step of the stream runs inside moert (here held in a Python router), other calls on its session and
    on the stream itself raise at once instead of waiting or corrupting the session."""
    kind = _blocking_router()
    with mixtral.session() as session, mixtral.session() as reference_session:
        reference_session.set_router(kind)
        expected_stream = reference_session.generate_text("Hi", 6, ignore_eos=True)
        expected = "".join(run(expected_stream))

        session.set_router(kind)
        stream = session.generate_text("Hi", 6, ignore_eos=True)
        BlockingRouter.entered.clear()
        BlockingRouter.release.clear()
        BlockingRouter.armed = True
        first: List[str] = []
        worker = threading.Thread(target=lambda: first.append(next(stream)))
        worker.start()
        try:
            assert BlockingRouter.entered.wait(30), "the stream's first step never reached the router"
            with pytest.raises(moert.InvalidArgumentError, match=IN_USE):
                session.eval([1])
            other = session.generate_text("x", 1)  # lazy: nothing runs yet
            with pytest.raises(moert.InvalidArgumentError, match=IN_USE):
                next(other)
            with pytest.raises(moert.InvalidArgumentError, match=IN_USE):
                next(stream)
            with pytest.raises(moert.InvalidArgumentError, match=IN_USE):
                stream.close()
        finally:
            BlockingRouter.release.set()
            worker.join(30)
        assert first and first[0] is not None
        text = first[0] + "".join(run(stream))
    assert stream.tokens == expected_stream.tokens
    assert text == expected


def test_a_router_cannot_step_the_stream_it_runs_for(mixtral: moert.Model) -> None:
    kind = _blocking_router()
    with mixtral.session() as session:
        session.set_router(kind)
        stream = session.generate_text("Hi", 4, ignore_eos=True)
        BlockingRouter.seen = []
        BlockingRouter.reentrant = lambda: next(stream)
        with pytest.raises(moert.PluginError):
            next(stream)
        assert BlockingRouter.seen and IN_USE in str(BlockingRouter.seen[0])
        stream.close()
        session.reset()
        session.set_router(None)
        assert len(session.generate_all([1, 2], 3, ignore_eos=True)) == 3
