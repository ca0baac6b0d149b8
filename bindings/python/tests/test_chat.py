"""Chat templates through Tokenizer.apply_chat_template and Model.apply_chat_template, against what transformers
rendered (Tests/fixtures/chat, made by tools/make_chat_fixtures.py: every real template on a set of conversations,
the named templates of a Command-R config, small templates probing Jinja semantics) and the shared Qwen2 chat cases
of Tests/fixtures/tokenizers/qwen2."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set

import pytest

import moert
from conftest import FIXTURES

CHAT = FIXTURES / "chat"
TOKENIZERS = FIXTURES / "tokenizers"
MIXTRAL = FIXTURES / "mixtral"
#: The time transformers' strftime_now formatted for the fixtures (tools/make_chat_fixtures.py FIXED_TIME, as UTC).
FIXED_TIME = 1741955696


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    # Lines end in "\n" only: the texts hold other line separators (U+2028, ...) that splitlines() would cut at.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").rstrip("\n").split("\n")]


CASES = read_jsonl(CHAT / "cases.jsonl")
CASE_IDS = [f"{c['template']}/{c['conversation']}/{'gen' if c['add_generation_prompt'] else 'nogen'}" for c in CASES]
JINJA_CASES = read_jsonl(CHAT / "jinja_cases.jsonl")
QWEN2_CASES = read_jsonl(TOKENIZERS / "qwen2" / "chat_cases.jsonl")
FAMILY_TOKENS: Dict[str, Dict[str, str]] = json.loads((CHAT / "templates" / "special_tokens.json").read_text())


def template_source(case: Dict[str, Any]) -> str:
    """The template text of a case of cases.jsonl (for a config: all of its templates)."""
    if case["config"]:
        return (CHAT / case["config"] / "tokenizer_config.json").read_text(encoding="utf-8")
    return (CHAT / "templates" / (case["template"] + ".jinja")).read_text(encoding="utf-8")


def strftime_formats(source: str) -> List[str]:
    """The formats a template passes to strftime_now."""
    return re.findall(r"""strftime_now\(\s*["']([^"']*)["']\s*\)""", source)


def acceptable(case_text: str, formats: List[str], since: float, until: float) -> Set[str]:
    """The fixture's rendering with the dates transformers formatted at FIXED_TIME replaced by those of any second
    from `since` to `until`: moert's strftime_now formats the local time now, as transformers' does (the fixtures
    pinned it)."""
    if not formats:
        return {case_text}
    fixed = datetime.datetime.fromtimestamp(FIXED_TIME, datetime.timezone.utc)
    texts = set()
    for second in range(int(since), int(until) + 1):
        now = datetime.datetime.fromtimestamp(second)
        text = case_text
        for form in formats:
            text = text.replace(fixed.strftime(form), now.strftime(form))
        texts.add(text)
    return texts


def check_error(raised: BaseException, expected: Dict[str, str]) -> None:
    """moert's error for what transformers raised: Jinja's parse-time errors are FormatError, errors while rendering
    InvalidArgumentError; raise_exception's message (TemplateError) is the whole message, others end the message
    (after where in the template it happened)."""
    parse_time = expected["type"] in ("TemplateSyntaxError", "TemplateAssertionError")
    assert isinstance(raised, moert.FormatError if parse_time else moert.InvalidArgumentError), repr(raised)
    message = raised.message  # type: ignore[attr-defined]
    if expected["type"] == "TemplateError":
        assert message == expected["message"]
    else:
        assert message.endswith(expected["message"]), (message, expected["message"])


class Directories:
    """Model directories for the fixture templates, made on first use and kept for the module: the Mixtral fixture's
    weights and byte-level tokenizer.json (rendering does not use the vocabulary) with the case's tokenizer_config.json
    (command-r, qwen2) or the family's special tokens and the template as chat_template.jinja."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tokenizers: Dict[str, moert.Tokenizer] = {}
        self.models: Dict[str, moert.Model] = {}

    def path(self, case: Dict[str, Any]) -> Path:
        key = case["config"] or case["template"]
        path = self.root / key
        if not path.exists():
            path.mkdir()
            for name in ("tokenizer.json", "config.json", "model.safetensors"):
                shutil.copy(MIXTRAL / name, path)
            if case["config"]:
                shutil.copy(CHAT / case["config"] / "tokenizer_config.json", path)
            else:
                (path / "tokenizer_config.json").write_text(json.dumps(FAMILY_TOKENS[key], ensure_ascii=False))
                shutil.copy(CHAT / "templates" / (key + ".jinja"), path / "chat_template.jinja")
        return path

    def tokenizer(self, case: Dict[str, Any]) -> moert.Tokenizer:
        key = case["config"] or case["template"]
        if key not in self.tokenizers:
            self.tokenizers[key] = moert.Tokenizer(self.path(case))
        return self.tokenizers[key]

    def model(self, case: Dict[str, Any]) -> moert.Model:
        key = case["config"] or case["template"]
        if key not in self.models:
            self.models[key] = moert.Model(self.path(case))
        return self.models[key]

    def close(self) -> None:
        for thing in [*self.tokenizers.values(), *self.models.values()]:
            thing.close()


@pytest.fixture(scope="module")
def directories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directories]:
    made = Directories(tmp_path_factory.mktemp("chat"))
    yield made
    made.close()


def render(renderer: Any, case: Dict[str, Any], **extra: Any) -> str:
    """A case rendered by `renderer` (a Tokenizer or a Model): its messages and variables as JSON text parsed into
    dicts that keep the key order transformers saw."""
    options = dict(json.loads(case["variables"]), **extra)
    if "template_name" in case:
        options["template_name"] = case["template_name"]
    return renderer.apply_chat_template(json.loads(case["messages"]), case["add_generation_prompt"], **options)


def test_the_fixtures_are_present() -> None:
    assert len(CASES) > 600 and len(set(CASE_IDS)) == len(CASE_IDS)
    assert len({c["template"] for c in CASES}) >= 26
    assert sum("error" in c for c in CASES) > 50
    assert any(c.get("template_name") == "rag" for c in CASES)
    assert {"thinking_off", "tools"} <= {c["conversation"] for c in CASES}
    # The strftime_now templates were rendered at FIXED_TIME.
    dated = [c for c in CASES if strftime_formats(template_source(c)) and "rendered" in c]
    assert dated and any("2025" in c["rendered"] for c in dated)
    assert len(JINJA_CASES) > 80 and len(QWEN2_CASES) >= 10


@pytest.mark.parametrize("via", ["tokenizer", "model"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(directories: Directories, case: Dict[str, Any], via: str) -> None:
    """Each conversation renders as transformers rendered it, or fails as it failed."""
    renderer = directories.tokenizer(case) if via == "tokenizer" else directories.model(case)
    since = time.time()
    try:
        text: Optional[str] = render(renderer, case)
        error: Optional[BaseException] = None
    except moert.MoertError as e:
        text, error = None, e
    until = time.time()
    if "rendered" in case:
        assert error is None, f"expected a rendering, got {error!r}"
        assert text in acceptable(case["rendered"], strftime_formats(template_source(case)), since, until)
    else:
        assert error is not None, f"expected {case['error']}, got a rendering"
        check_error(error, case["error"])


def test_model_apply_chat_template_is_its_tokenizers(directories: Directories) -> None:
    case = next(c for c in CASES if c["template"] == "qwen2.5" and c["conversation"] == "tools")
    model = directories.model(case)
    assert render(model, case) == render(model.tokenizer, case) == case["rendered"]


# Variables and named templates


def fixture_case(template: str, conversation: str, generation: bool = True) -> Dict[str, Any]:
    return next(c for c in CASES if c["template"] == template and c["conversation"] == conversation
                and c["add_generation_prompt"] == generation)


@pytest.mark.parametrize("template", ["qwen3", "smollm3"])
def test_enable_thinking_reaches_the_template(directories: Directories, template: str) -> None:
    thinking, not_thinking = fixture_case(template, "multi_turn"), fixture_case(template, "thinking_off")
    assert json.loads(not_thinking["variables"]) == {"enable_thinking": False}
    assert thinking["messages"] == not_thinking["messages"] and thinking["rendered"] != not_thinking["rendered"]
    tokenizer = directories.tokenizer(thinking)
    messages = json.loads(thinking["messages"])
    assert tokenizer.apply_chat_template(messages) == thinking["rendered"]
    assert tokenizer.apply_chat_template(messages, enable_thinking=False) == not_thinking["rendered"]


def test_tools_reach_the_template(directories: Directories) -> None:
    case = fixture_case("llama-3.1", "date_and_tools_in_system")
    variables = json.loads(case["variables"])
    assert set(variables) == {"tools", "tools_in_user_message", "date_string"}
    tokenizer = directories.tokenizer(case)
    assert tokenizer.apply_chat_template(json.loads(case["messages"]), **variables) == case["rendered"]
    assert tokenizer.apply_chat_template(json.loads(case["messages"])) != case["rendered"]


def test_command_r_named_templates(directories: Directories) -> None:
    """tokenizer_config.json's list of templates: "default" unless named; "tool_use" when tools are passed (as
    transformers picks it); "rag" by name."""
    config = json.loads((CHAT / "command-r" / "tokenizer_config.json").read_text(encoding="utf-8"))
    templates = {t["name"]: t["template"] for t in config["chat_template"]}
    assert set(templates) == {"default", "tool_use", "rag"}
    plain = fixture_case("command-r", "system_user")
    tools = fixture_case("command-r", "tools")
    rag = next(c for c in CASES if c.get("template_name") == "rag" and c["add_generation_prompt"])
    for renderer in (directories.tokenizer(plain), directories.model(plain)):
        messages = json.loads(plain["messages"])
        assert renderer.apply_chat_template(messages) == plain["rendered"]
        assert renderer.apply_chat_template(messages, template_name="default") == plain["rendered"]
        # The default template does not read tools: named, it renders as without them.
        assert "tools" not in templates["default"]
        tool_list = json.loads(tools["variables"])["tools"]
        assert renderer.apply_chat_template(messages, template_name="default", tools=tool_list) == plain["rendered"]
        # Unnamed with tools, and named "tool_use", both fail as transformers failed with tools.
        for name in (None, "tool_use"):
            with pytest.raises(moert.MoertError) as raised:
                renderer.apply_chat_template(json.loads(tools["messages"]), template_name=name, tools=tool_list)
            check_error(raised.value, tools["error"])
        documents = json.loads(rag["variables"])["documents"]
        assert renderer.apply_chat_template(json.loads(rag["messages"]), template_name="rag",
                                            documents=documents) == rag["rendered"]
        with pytest.raises(moert.UnsupportedError, match="no chat template named nope .*default"):
            renderer.apply_chat_template(messages, template_name="nope")


def test_variables_override_the_configs_special_tokens(tmp_path: Path) -> None:
    """The config's special tokens are template variables, as transformers passes its special_tokens_map; a variable
    of the same name replaces one."""
    shutil.copy(MIXTRAL / "tokenizer.json", tmp_path)
    config = {"bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>"},
              "chat_template": "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ messages[0].content }}"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    messages = [{"role": "user", "content": "x"}]
    with moert.Tokenizer(tmp_path) as tokenizer:
        assert tokenizer.apply_chat_template(messages) == "<s>|</s>|False|x"
        assert tokenizer.apply_chat_template(messages, eos_token="END", pad_token=None) == "<s>|END|True|x"


def one_template(path: Path, template: str) -> moert.Tokenizer:
    """A tokenizer whose tokenizer_config.json has only `template`."""
    path.mkdir(exist_ok=True)
    shutil.copy(MIXTRAL / "tokenizer.json", path)
    (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return moert.Tokenizer(path)


def test_key_order_is_kept(tmp_path: Path) -> None:
    """Messages and variables keep their key order, as the dicts transformers passes to Jinja do: items() and
    transformers' tojson (json.dumps with ensure_ascii=False) show it."""
    template = ("{% for m in messages %}{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}{{ m | tojson }}\n"
                "{% endfor %}{{ tools | tojson }}|{{ extra | tojson }}|{% for k in extra %}{{ k }}{% endfor %}")
    messages = [
        {"z": "last first", "role": "user", "a": "ä", "content": "x"},
        {"content": "y", "role": "assistant",
         "tool_calls": [{"function": {"name": "f", "arguments": {"unit": "c", "location": "P"}}}]},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"z": 1, "a": [2, {"y": None, "b": True}]}}}]
    extra = {"y": None, "b": True, "n": 1.5, "s": "é\n"}
    expected = "".join(
        "".join(f"{k}={v};" for k, v in m.items()) + json.dumps(m, ensure_ascii=False) + "\n" for m in messages
    ) + json.dumps(tools, ensure_ascii=False) + "|" + json.dumps(extra, ensure_ascii=False) + "|" + "".join(extra)
    with one_template(tmp_path, template) as tokenizer:
        assert tokenizer.apply_chat_template(messages, tools=tools, extra=extra) == expected


@pytest.mark.parametrize("case", JINJA_CASES, ids=[c["name"] for c in JINJA_CASES])
def test_jinja_semantics_case(tmp_path: Path, case: Dict[str, Any]) -> None:
    """The small templates of jinja_cases.jsonl, rendered by transformers' Jinja environment with the case's
    variables; here as chat templates, with the variables passed to apply_chat_template (and one message, which
    these templates do not read, unless the case gives messages)."""
    variables = json.loads(case["variables"])
    messages = variables.pop("messages", [{"role": "user", "content": "unused"}])
    generation = variables.pop("add_generation_prompt", False)
    with one_template(tmp_path, case["template"]) as tokenizer:
        since = time.time()
        try:
            text: Optional[str] = tokenizer.apply_chat_template(messages, generation, **variables)
            error: Optional[BaseException] = None
        except moert.MoertError as e:
            text, error = None, e
        until = time.time()
    if "error" in case:
        assert error is not None, f"expected {case['error']}, got {text!r}"
        check_error(error, case["error"])
        return
    assert error is None, repr(error)
    formats = strftime_formats(case["template"])
    if formats:
        # transformers rendered the fixed time; moert renders now (any second of the call).
        fixed = datetime.datetime.fromtimestamp(FIXED_TIME, datetime.timezone.utc)
        assert case["rendered"] == fixed.strftime(formats[0])
        seconds = range(int(since), int(until) + 1)
        assert text in {datetime.datetime.fromtimestamp(s).strftime(formats[0]) for s in seconds}
    else:
        assert text == case["rendered"]


# The qwen2 vocabulary with its own tokenizer_config.json, and the Mixtral fixture's small template


@pytest.fixture(scope="module")
def qwen2_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[moert.Model]:
    """The Mixtral fixture's weights with the real Qwen2 tokenizer files (only the text side is used)."""
    path = tmp_path_factory.mktemp("qwen2_model")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(MIXTRAL / name, path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZERS / "qwen2" / name, path)
    with moert.Model(path) as model:
        yield model


@pytest.mark.parametrize("number", range(len(QWEN2_CASES)))
def test_qwen2_chat_case(qwen2_model: moert.Model, number: int) -> None:
    case = QWEN2_CASES[number]
    for renderer in (qwen2_model, qwen2_model.tokenizer):
        assert renderer.apply_chat_template(case["messages"], case["add_generation_prompt"]) == case["rendered"]


def test_qwen2_renderings_encode_their_special_tokens_as_such(qwen2_model: moert.Model) -> None:
    """The template writes the special tokens; encoded without add_special_tokens they are their added-token ids
    (tokenizer.json), once each."""
    document = json.loads((TOKENIZERS / "qwen2" / "tokenizer.json").read_text(encoding="utf-8"))
    added = {token["content"]: token["id"] for token in document["added_tokens"]}
    tokenizer = qwen2_model.tokenizer
    for case in QWEN2_CASES:
        ids = tokenizer.encode(case["rendered"], add_special_tokens=False)
        assert ids.count(added["<|im_start|>"]) == case["rendered"].count("<|im_start|>") > 0
        assert ids.count(added["<|im_end|>"]) == case["rendered"].count("<|im_end|>")
        assert tokenizer.decode(ids) == case["rendered"]


def mixtral_template(messages: List[Dict[str, Any]], add_generation_prompt: bool) -> str:
    """The Mixtral fixture's template (tokenizer_config.json): '<' + role + '>' + content + '\\n' per message, then
    '<assistant>' for a generation prompt."""
    text = "".join("<" + m["role"] + ">" + m["content"] + "\n" for m in messages)
    return text + ("<assistant>" if add_generation_prompt else "")


def test_the_mixtral_fixtures_template(mixtral: moert.Model) -> None:
    conversations = {c["conversation"]: json.loads(c["messages"]) for c in CASES}
    checked = 0
    for name, messages in conversations.items():
        if not all(isinstance(m.get("content"), str) for m in messages):
            continue
        for generation in (False, True):
            assert mixtral.apply_chat_template(messages, generation) == mixtral_template(messages, generation), name
        # add_generation_prompt is on by default (transformers' default is False).
        assert mixtral.apply_chat_template(messages) == mixtral_template(messages, True)
        checked += 1
    assert checked >= 8


# Errors


def test_no_chat_template(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with moert.Tokenizer(MIXTRAL / "tokenizer.json") as from_file:  # a file: no config, so no template
        with pytest.raises(moert.UnsupportedError, match="no chat template"):
            from_file.apply_chat_template(messages)
    for source in MIXTRAL.iterdir():
        shutil.copy(source, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with moert.Model(tmp_path) as model:
        with pytest.raises(moert.UnsupportedError, match="no chat template"):
            model.apply_chat_template(messages)
    # chat_template.jinja beside the config gives it one.
    (tmp_path / "chat_template.jinja").write_text("[{{ messages[0]['content'] }}]")
    with moert.Model(tmp_path) as model:
        assert model.apply_chat_template(messages) == "[hi]"


def test_raise_exception_gives_its_message(tmp_path: Path) -> None:
    with one_template(tmp_path, "{{ raise_exception('No ' ~ messages[0]['role'] ~ ' here') }}") as tokenizer:
        with pytest.raises(moert.InvalidArgumentError) as raised:
            tokenizer.apply_chat_template([{"role": "user", "content": "x"}])
    assert raised.value.message == "No user here"


def test_a_fixture_template_raising(directories: Directories) -> None:
    case = fixture_case("gemma-2", "system_user")
    with pytest.raises(moert.InvalidArgumentError) as raised:
        directories.model(case).apply_chat_template(json.loads(case["messages"]))
    assert str(raised.value) == case["error"]["message"] == "System role not supported"


@pytest.mark.parametrize(
    "messages, variables",
    [
        ([{"role": "user", "content": b"bytes"}], {}),
        ([{"role": "user", "content": object()}], {}),
        ([{"role": "user", "content": {1, 2}}], {}),
        ([{"role": "user", "content": "x"}], {"tools": [object()]}),
        ([{"role": "user", "content": "x"}], {"documents": b"x"}),
    ],
    ids=["bytes", "object", "set", "variable-object", "variable-bytes"],
)
def test_values_json_cannot_represent(tmp_path: Path, messages: Any, variables: Dict[str, Any]) -> None:
    with one_template(tmp_path, "{{ messages }}") as tokenizer:
        with pytest.raises(TypeError, match="not JSON serializable"):
            tokenizer.apply_chat_template(messages, **variables)
        fine = tokenizer.apply_chat_template([{"role": "user", "content": "ok"}])
        assert fine == "[{'role': 'user', 'content': 'ok'}]"


@pytest.mark.parametrize("messages", [[], ["a"], [1], [[{"role": "user", "content": "x"}]], "abc"],
                         ids=["empty", "strings", "numbers", "nested", "str"])
def test_messages_that_are_not_a_list_of_objects(tmp_path: Path, messages: Any) -> None:
    with one_template(tmp_path, "{{ messages }}") as tokenizer:
        with pytest.raises(moert.InvalidArgumentError):
            tokenizer.apply_chat_template(messages)


def test_messages_may_be_any_sequence_of_mappings(tmp_path: Path) -> None:
    with one_template(tmp_path, "{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}") as tokenizer:
        as_list = tokenizer.apply_chat_template([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])
        as_tuple = tokenizer.apply_chat_template(({"role": "user", "content": "a"}, {"role": "bot", "content": "b"}))
        pairs = [("user", "a"), ("bot", "b")]
        as_generator = tokenizer.apply_chat_template({"role": r, "content": c} for r, c in pairs)
    assert as_list == as_tuple == as_generator == "user:a;bot:b;"


def test_template_errors(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "x"}]
    with one_template(tmp_path / "parse", "line one\n{% if %}") as tokenizer:
        with pytest.raises(moert.FormatError, match=r"chat template:2:\d+"):
            tokenizer.apply_chat_template(messages)
    with one_template(tmp_path / "include", "{% include 'other.jinja' %}") as tokenizer:
        with pytest.raises(moert.UnsupportedError, match="include"):
            tokenizer.apply_chat_template(messages)
    with one_template(tmp_path / "undefined", "{{ messages[0].content }}{{ nothing.here }}") as tokenizer:
        with pytest.raises(moert.InvalidArgumentError, match="'nothing' is undefined"):
            tokenizer.apply_chat_template(messages)
        with pytest.raises(moert.InvalidArgumentError, match="NUL"):
            tokenizer.apply_chat_template(messages, template_name="a\0b")
        # Text with NUL characters is fine inside messages and variables (JSON escapes it).
        with one_template(tmp_path / "nul", "{{ messages[0].content }}|{{ v }}") as nul:
            assert nul.apply_chat_template([{"role": "user", "content": "a\0b"}], v="c\0d") == "a\0b|c\0d"


def test_closed_tokenizer_and_model(tmp_path: Path) -> None:
    for source in MIXTRAL.iterdir():
        shutil.copy(source, tmp_path)
    messages = [{"role": "user", "content": "x"}]
    model = moert.Model(tmp_path)
    tokenizer = model.tokenizer
    tokenizer.close()
    with pytest.raises(moert.InvalidArgumentError, match="Tokenizer is closed"):
        tokenizer.apply_chat_template(messages)
    assert model.apply_chat_template(messages) == "<user>x\n<assistant>"  # the model loads its tokenizer again
    model.close()
    with pytest.raises(moert.InvalidArgumentError, match="Model is closed"):
        model.apply_chat_template(messages)


def test_rendering_from_several_threads_at_once(qwen2_model: moert.Model) -> None:
    """A tokenizer is immutable and may be shared: renderings on four threads at once are all right."""
    tokenizer = qwen2_model.tokenizer
    wrong: List[str] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(25):
            for case in QWEN2_CASES:
                if tokenizer.apply_chat_template(case["messages"], case["add_generation_prompt"]) != case["rendered"]:
                    wrong.append(case["rendered"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
