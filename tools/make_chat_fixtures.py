#!/usr/bin/env python3
"""make_chat_fixtures.py: expected chat template renderings for Tests/MoertTextTests/Chat*.swift, made by transformers.

Writes, under Tests/fixtures/chat/:
  cases.jsonl        each real template of templates/ (and the configs of command-r/ and qwen2/) rendered on a set
                     of conversations by transformers' own PreTrainedTokenizerFast.apply_chat_template(..., tokenize=False)
  jinja_cases.jsonl  small templates probing Jinja semantics, rendered in transformers' Jinja environment
                     (transformers.utils.chat_template_utils._compile_jinja_template)
  templates/special_tokens.json  the special tokens each template family was rendered with (FAMILIES below)
  qwen2/special_tokens.json  the special_tokens_map transformers builds from qwen2/tokenizer_config.json

Each line of cases.jsonl: {"template": NAME, "config": DIR or null, "messages": JSON text, "variables": JSON text,
"add_generation_prompt": bool, "rendered": TEXT} or, when transformers raised, "error": {"type", "message"} instead of
"rendered". Messages and variables are JSON text so that the key order transformers saw reaches moert unchanged.
strftime_now formats the fixed time FIXED_TIME (as UTC); moert's tests pass the same time.

Needs: pip install "transformers==5.25.*" jinja2 tokenizers, and gguf for --extract (CI does not run this script;
it reads what it wrote). The qwen2 special tokens are read with AutoTokenizer from ../shared/tokenizers/qwen2, whose
tokenizer.json is too large to copy into the fixtures.

The templates themselves were taken once from the llama-cpp-python 0.3.36 source package on PyPI (its vendored
llama.cpp: models/templates/*.jinja as each model ships them, the chat_template fields of the vocabulary-only GGUF files
in models/, the Mistral/Mixtral templates quoted from the models' tokenizer_config.json in
llama_cpp/llama_chat_format.py, DeepSeek V2's from tests/test-chat-template.cpp); `--extract SDIST` repeats that.
"""

import argparse
import datetime
import json
import os
import re
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "fixtures", "chat")
TEMPLATES = os.path.join(OUT, "templates")
FIXED_TIME = 1741955696  # 2025-03-14 12:34:56 UTC

# Template file (in templates/) -> (where it came from in the sdist, special tokens the family's config defines).
FAMILIES = {
    "qwen2.5": ("models/templates/Qwen-Qwen2.5-7B-Instruct.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "qwen3": ("models/templates/Qwen-Qwen3-0.6B.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "qwq": ("models/templates/Qwen-QwQ-32B.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "mixtral-v0.1": ("llama_cpp/llama_chat_format.py:MIXTRAL_INSTRUCT_CHAT_TEMPLATE", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "mistral-v0.1": ("llama_cpp/llama_chat_format.py:MISTRAL_INSTRUCT_CHAT_TEMPLATE", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "mistral-nemo": ("models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "mistral-small-3.2": ("models/templates/Mistral-Small-3.2-24B-Instruct-2506.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "phi-3": ("models/ggml-vocab-phi-3.gguf:tokenizer.chat_template", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    "phi-3.5": ("models/templates/microsoft-Phi-3.5-mini-instruct.jinja", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    "deepseek-v2": ("tests/test-chat-template.cpp:DeepSeek-V2", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "deepseek-v3.1": ("models/templates/deepseek-ai-DeepSeek-V3.1.jinja", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "deepseek-v3.2": ("models/templates/deepseek-ai-DeepSeek-V3.2.jinja", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "deepseek-r1-distill-qwen": ("models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "deepseek-r1-distill-llama": ("models/templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "llama-3.1": ("models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "llama-3.2": ("models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "gpt-oss": ("models/templates/openai-gpt-oss-120b.jinja", {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}),
    "gemma-2": ("models/templates/google-gemma-2-2b-it.jinja", {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}),
    "hermes-3-tool-use": ("models/templates/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}),
    "granite-3.3": ("models/templates/ibm-granite-granite-3.3-2B-Instruct.jinja", {"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"}),
    "functionary-v3.1": ("models/templates/meetkai-functionary-medium-v3.1.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "functionary-v3.2": ("models/templates/meetkai-functionary-medium-v3.2.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "smollm3": ("models/templates/HuggingFaceTB-SmolLM3-3B.jinja", {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}),
    "kimi-k2": ("models/templates/moonshotai-Kimi-K2.jinja", {"bos_token": "[BOS]", "eos_token": "[EOS]"}),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            },
            "required": ["location"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}}}

UNICODE = "Grüße, 世界! 👋🏽 e\u0301 «ταχύ» مرحبا\ttab \"quotes\" 'single' back\\slash"

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is 2 + 2?"}],
    "multi_turn": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke.\nA short one."},
    ],
    "no_system_multi": [
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three"},
        {"role": "assistant", "content": "Four"},
    ],
    "empty_content": [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": ""}, {"role": "user", "content": "  spaced  "}],
    "unicode": [{"role": "user", "content": UNICODE}, {"role": "assistant", "content": "¡Hola! — ok ✓\n\n"}, {"role": "user", "content": "日本語のテキスト"}],
    "reasoning": [
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "<think>\nRayleigh scattering.\n</think>\n\nBecause of Rayleigh scattering."},
        {"role": "user", "content": "And sunsets?"},
    ],
    "reasoning_field": [
        {"role": "user", "content": "Add 3 and 4."},
        {"role": "assistant", "content": "7", "reasoning_content": "3 + 4 = 7"},
        {"role": "user", "content": "Double it."},
    ],
    "null_fields": [{"role": "user", "content": "Hi", "name": None}, {"role": "assistant", "content": "Yo", "tool_calls": None}, {"role": "user", "content": "Bye"}],
    "alternation_broken": [{"role": "user", "content": "A"}, {"role": "user", "content": "B"}],
    "odd_role": [{"role": "narrator", "content": "Once upon a time"}],
}

TOOL_CONVERSATION = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "abc123XYZ", "type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "abc123XYZ", "name": "get_weather", "content": "{\"temperature\": 21, \"condition\": \"sunny\"}"},
    {"role": "assistant", "content": "It is 21 °C and sunny in Paris."},
    {"role": "user", "content": "Thanks"},
]
TOOL_CALL_STRING_ARGS = [
    {"role": "user", "content": "Time?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "xyz987ABC", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "xyz987ABC", "name": "get_time", "content": "12:00"},
]


def fixed_clock():
    """Makes transformers' strftime_now format FIXED_TIME (as a naive UTC datetime)."""
    import transformers.utils.chat_template_utils as ctu

    class FixedDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(FIXED_TIME, datetime.timezone.utc).replace(tzinfo=None)

    ctu.datetime = FixedDatetime


def tokenizer(chat_template, special):
    """A PreTrainedTokenizerFast with this template and these special tokens (its vocabulary is irrelevant here)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=chat_template, **special)


def render(tok, messages, generation_prompt, variables):
    """transformers' apply_chat_template(tokenize=False); the error's type and message when the template raises."""
    import jinja2

    kwargs = dict(variables)
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt, **kwargs)
        return {"rendered": text}
    except (jinja2.TemplateError, TypeError, ValueError) as e:
        return {"error": {"type": type(e).__name__, "message": str(e)}}


def real_cases():
    cases = []

    def add(name, config, tok, conversation_name, messages, variables):
        for generation_prompt in (False, True):
            entry = {"template": name, "config": config, "conversation": conversation_name,
                     "messages": json.dumps(messages, ensure_ascii=False),
                     "variables": json.dumps(variables, ensure_ascii=False),
                     "add_generation_prompt": generation_prompt}
            entry.update(render(tok, messages, generation_prompt, variables))
            cases.append(entry)

    for name, (_, special) in FAMILIES.items():
        with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        tok = tokenizer(template, special)
        for conversation_name, messages in CONVERSATIONS.items():
            add(name, None, tok, conversation_name, messages, {})
        add(name, None, tok, "tools", TOOL_CONVERSATION, {"tools": [WEATHER_TOOL, TIME_TOOL]})
        add(name, None, tok, "tool_string_arguments", TOOL_CALL_STRING_ARGS, {"tools": [TIME_TOOL]})
        if name in ("qwen3", "smollm3"):
            add(name, None, tok, "thinking_off", CONVERSATIONS["multi_turn"], {"enable_thinking": False})
        if name == "gpt-oss":
            add(name, None, tok, "builtin_tools", CONVERSATIONS["reasoning_field"], {"builtin_tools": ["browser", "python"], "reasoning_effort": "high", "model_identity": "You are moert's test model."})
        if name == "llama-3.1":
            add(name, None, tok, "date_and_tools_in_system", TOOL_CONVERSATION, {"tools": [WEATHER_TOOL], "tools_in_user_message": False, "date_string": "01 Jan 2025"})

    # Model directories: the config decides templates and special tokens, as AutoTokenizer.from_pretrained reads them.
    for config in ("command-r", "qwen2"):
        directory = os.path.join(OUT, config)
        with open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8") as f:
            data = json.load(f)
        special = {k: (v["content"] if isinstance(v, dict) else v) for k, v in data.items()
                   if k.endswith("_token") and v is not None and isinstance(v, (str, dict))}
        tok = tokenizer(data["chat_template"], special)
        for conversation_name, messages in CONVERSATIONS.items():
            add(config, config, tok, conversation_name, messages, {})
        add(config, config, tok, "tools", TOOL_CONVERSATION, {"tools": [WEATHER_TOOL]})
        if config == "command-r":
            docs = [{"title": "Paris", "text": "Paris is the capital of France."}, {"title": "Weather", "text": "Sunny, 21 °C."}]
            for generation_prompt in (False, True):
                entry = {"template": config, "config": config, "conversation": "rag", "template_name": "rag",
                         "messages": json.dumps(CONVERSATIONS["system_user"], ensure_ascii=False),
                         "variables": json.dumps({"documents": docs}, ensure_ascii=False),
                         "add_generation_prompt": generation_prompt}
                try:
                    text = tok.apply_chat_template(CONVERSATIONS["system_user"], tokenize=False, chat_template="rag",
                                                   documents=docs, add_generation_prompt=generation_prompt)
                    entry["rendered"] = text
                except Exception as e:  # noqa: BLE001 - recorded as the expected outcome
                    entry["error"] = {"type": type(e).__name__, "message": str(e)}
                cases.append(entry)
    return cases


# Small templates probing Jinja semantics: (name, template, variables). Rendered in transformers' environment.
SEMANTICS = [
    ("none_true_false", "{{ none }}|{{ true }}|{{ false }}|{{ None }}|{{ True }}", {}),
    ("numbers", "{{ 1 }}|{{ 1.0 }}|{{ 1.5e3 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 0.1 + 0.2 }}|{{ 1e-5 }}|{{ -0.0 }}|{{ 10 / 4 }}|{{ 10 / 5 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 2 ** 3 ** 2 }}|{{ 1_000 }}|{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}|{{ 3.0 * 2 }}|{{ 7.5 // 2 }}|{{ -7.5 % 2 }}", {}),
    ("float_repr", "{{ 123456789.125 }}|{{ 0.0001 }}|{{ 0.00001234 }}|{{ 1.5e300 }}|{{ 2.5e-7 }}|{{ 100.0 }}|{{ 1e22 }}|{{ 9007199254740993.0 }}", {}),
    ("strings", "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ 'x' + 'y' }}|{{ \"it's\" }}|{{ 'say \"hi\"' }}|{{ 'tab\\there' }}|{{ 'nl\\n' }}|{{ 'uni\\u00e9\\U0001F600' }}|{{ 'a' 'b' }}", {}),
    ("repr_list_dict", "{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'v', 'n': [1, (2,)]} }}|{{ (1, 2) }}|{{ () }}|{{ ['it\\'s', \"q\\\"\", 'nl\\n', 'é'] }}|{{ [] }}|{{ {} }}", {}),
    ("comparisons", "{{ 1 < 2 < 3 }}|{{ 1 < 3 < 2 }}|{{ 1 == 1.0 }}|{{ true == 1 }}|{{ 'a' < 'b' }}|{{ [1, 2] < [1, 3] }}|{{ 'ab' in 'cabd' }}|{{ 2 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 3 not in [1] }}|{{ none == none }}|{{ 'a' != 'b' }}|{{ 2 >= 2 }}", {}),
    ("logic_values", "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ not [] }}|{{ none or [] }}|{{ 1 if false }}|{{ 'y' if 0 else 'n' }}|{{ 'a' if true else 'b' if true else 'c' }}", {}),
    ("undefined", "[{{ missing }}]{{ missing is defined }}{{ missing is undefined }}{{ missing | length }}{{ missing ~ 'x' }}{{ missing | default('d') }}{{ missing is none }}{{ (missing | list) }}{% for x in missing %}no{% endfor %}{{ missing is iterable }}{{ missing is sequence }}{{ missing is mapping }}{{ 'a' in missing }}{{ missing == missing }}", {}),
    ("undefined_attribute_of_dict", "{{ d.nope }}|{{ d['nope'] }}|{{ d.nope is defined }}|{{ d.get('nope') }}|{{ d.get('nope', 5) }}|{{ d.k }}", {"d": {"k": 1}}),
    ("undefined_attribute_error", "{{ missing.attr }}", {}),
    ("undefined_add_error", "{{ d.nope + 'x' }}", {"d": {}}),
    ("undefined_index_error", "{{ nothing[0] }}", {}),
    ("list_index", "{{ xs[0] }}|{{ xs[-1] }}|{{ xs[5] }}|{{ xs[1:] }}|{{ xs[::-1] }}|{{ xs[:-1] }}|{{ xs[::2] }}|{{ 'hello'[1:3] }}|{{ 'hello'[-1] }}|{{ 'héllo'[::-1] }}|{{ xs.0 }}", {"xs": [1, 2, 3, 4]}),
    ("loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a', 'b') }}{{ loop.depth }};{% endfor %}", {"xs": ["p", "q", "r"]}),
    ("loop_else_filter", "{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}", {"xs": [1, 2, 3]}),
    ("loop_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop_scope", "{% set x = 0 %}{% for i in [1, 2] %}[{{ x }}{% set x = i %}{{ x }}]{% endfor %}{{ x }}", {}),
    ("loop_dict_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}", {"d": {"z": 1, "a": 2, "m": 3}}),
    ("loop_string", "{% for c in 'héé' %}[{{ c }}]{% endfor %}{{ 'héé' | length }}", {}),
    ("loop_changed", "{% for x in [1, 1, 2, 2, 1] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}", {}),
    ("nested_loops", "{% for a in [1, 2] %}{% set outer = loop %}{% for b in 'xy' %}{{ outer.index }}{{ loop.index }}{{ b }} {% endfor %}{% endfor %}", {}),
    ("namespace", "{% set ns = namespace(count=0, items=[]) %}{% for i in range(3) %}{% set ns.count = ns.count + i %}{% endfor %}{{ ns.count }}|{{ ns.items }}|{{ ns.missing is defined }}", {}),
    ("if_scope", "{% if true %}{% set z = 5 %}{% endif %}{{ z }}{% if false %}{% elif 1 %}b{% else %}c{% endif %}", {}),
    ("macro", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }}|{{ greet('Bob', 'Hi') }}|{{ greet(greeting='Yo', name='C') }}|{{ greet() }}", {}),
    ("macro_outer_names", "{% set y = 1 %}{% macro m() %}{{ y }}{% endmacro %}{% set y = 2 %}{{ m() }}", {}),
    ("macro_varargs_caller", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}|{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inside{% endcall %}", {}),
    ("macro_recursion", "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}", {}),
    ("block_set", "{% set text %}  a {{ 1 + 1 }} {% endset %}[{{ text }}]{% set up | upper %}low{% endset %}{{ up }}", {}),
    ("filter_block", "{% filter upper %}hello {{ 'x' }}{% endfilter %}", {}),
    ("with_block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a is defined }}", {}),
    ("raw_block", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    ("whitespace_control", "a  {{- ' b ' -}}  c\n  {%- if true %}  d  {% endif -%}\n  e {#- comment -#} f {# c2 #}\n{{ 'g' }}", {}),
    ("trim_lstrip_blocks", "<ul>\n    {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n    {% endfor %}\n</ul>\n  {# comment #}\nend\n", {}),
    ("plus_modifiers", "x\n    {%+ if true %}y{% endif +%}\nz", {}),
    ("crlf_and_trailing_newline", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("filters_text", "{{ '  hi  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Hello' | lower }}|{{ 'hello' | upper }}|{{ 'hello wORLD-foo (bar' | title }}|{{ 'hELLO world' | capitalize }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'a b  c' | wordcount }}|{{ 'x' | center(5) }}|{{ 'a<b>&\"\\'' | e }}|{{ 42 | string }}|{{ none | safe }}", {}),
    ("filters_lists", "{{ [3, 1, 2] | sort }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ ['b', 'A', 'c'] | sort }}|{{ [1, 2, 1, 3] | unique | list }}|{{ [1, 2, 3] | first }}|{{ [1, 2, 3] | last }}|{{ [1, 2, 3] | sum }}|{{ [1, 5, 3] | max }}|{{ [4, 2, 8] | min }}|{{ [1, 2] | reverse | list }}|{{ 'abc' | reverse }}|{{ [1, 2, 3] | join('-') }}|{{ [1, 2, 3] | length }}|{{ 'abc' | list }}|{{ [] | first is defined }}", {}),
    ("filters_select_map", "{{ users | selectattr('active') | map(attribute='name') | join(',') }}|{{ users | rejectattr('active') | map(attribute='name') | list }}|{{ users | selectattr('role', 'equalto', 'admin') | list | length }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }}|{{ ['a', 'b'] | map('upper') | list }}|{{ users | map(attribute='missing', default='?') | list }}|{{ users | map(attribute='name') | join(', ') }}|{{ users | sort(attribute='name') | map(attribute='name') | join }}|{{ users | selectattr('age', 'gt', 30) | map(attribute='name') | first }}", {"users": [{"name": "bo", "active": True, "role": "admin", "age": 40}, {"name": "al", "active": False, "role": "user", "age": 20}]}),
    ("filters_dict", "{{ d | items | list }}|{{ d | dictsort }}|{{ d | dictsort(by='value', reverse=true) }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d | length }}|{{ d | list }}", {"d": {"b": 2, "a": 3, "C": 1}}),
    ("filters_numbers", "{{ -3 | abs }}|{{ '42' | int }}|{{ '4.7' | int }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ '3.5' | float }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 2.675 | round(2) }}|{{ 2.1 | round(0, 'ceil') }}|{{ 5 | round }}|{{ 1.23456 | round(3, 'floor') }}|{{ 'ff' | int(base=16) }}|{{ true | int }}|{{ 3.9 | int }}", {}),
    ("filters_default", "{{ none | default('n') }}|{{ '' | default('e') }}|{{ '' | default('e', true) }}|{{ missing | d('m') }}|{{ false | default(1, boolean=true) }}", {}),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}", {}),
    ("tojson_default", "{{ data | tojson }}", {"data": {"b": [1, 2.5, None, True], "a": "é\"\\\n\t\u0001", "emoji": "😀", "nested": {"z": {}, "y": []}}}),
    ("tojson_indent_sort", "{{ data | tojson(indent=2) }}|{{ data | tojson(sort_keys=true) }}|{{ data | tojson(separators=(',', ':')) }}|{{ data | tojson(ensure_ascii=true) }}|{{ 'x' | tojson }}|{{ 1.0 | tojson }}|{{ none | tojson }}", {"data": {"b": [1, {"c": None}], "a": "é😀"}}),
    ("tojson_undefined_error", "{{ missing | tojson }}", {}),
    ("tests", "{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ true is integer }}{{ true is boolean }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is in [1, 2] }}{{ 2 is equalto 2 }}{{ 2 is eq 3 }}{{ none is none }}{{ true is true }}{{ 0 is false }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 5 is gt 3 }}{{ 5 is lt 3 }}{{ 'upper' is filter }}{{ 'nope' is test }}{{ x is not defined }}{{ 1 is not string }}", {}),
    ("string_methods", "{{ s.startswith('He') }}|{{ s.endswith(('x', 'd!')) }}|{{ s.split() }}|{{ s.split('l') }}|{{ s.split('l', 1) }}|{{ s.rsplit('l', 1) }}|{{ s.strip('H!') }}|{{ '  a  '.lstrip() }}|{{ '  a  '.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}|{{ s.replace('l', 'L') }}|{{ s.find('o') }}|{{ s.count('l') }}|{{ s.title() }}|{{ '-'.join(['a', 'b']) }}|{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '{}-{}'.format(1, 'x') }}|{{ '{name}!'.format(name='N') }}|{{ 'abc'.removeprefix('a') }}|{{ s.capitalize() }}|{{ '7'.isdigit() }}|{{ 'x'.zfill(3) }}", {"s": "Hello World!"}),
    ("think_split", "{% set c = content %}{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", {"content": "<think>\nreason\n</think>\n\nanswer"}),
    ("dict_literal_and_methods", "{% set d = {'a': 1, 'b': 2} %}{{ d.a }}{{ d['b'] }}{{ d.get('c', 0) }}{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}{{ dict(x=1, y=2) }}{{ d.items() }}", {}),
    ("items_method_shadows_key", "{{ d.items is defined }}|{{ d['items'] }}", {"d": {"items": "x"}}),
    ("range_variants", "{{ range(3) | list }}|{{ range(1, 7, 2) | list }}|{{ range(5, 0, -2) | list }}|{{ range(3) }}|{{ range(0) | list }}", {}),
    ("inline_if_and_concat", "{{ 'a' ~ ('b' if x else 'c') }}|{{ (x or 'none') ~ '!' }}", {"x": None}),
    ("comment_only", "{# only a comment #}", {}),
    ("strftime", "{{ strftime_now('%Y-%m-%d %H:%M:%S %a %b %j %%') }}", {}),
    ("raise_exception", "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}", {}),
    ("raise_in_macro", "{% macro check(r) %}{% if r != 'user' %}{{ raise_exception('bad role: ' ~ r) }}{% endif %}{% endmacro %}{{ check('user') }}{{ check('bot') }}", {}),
    ("list_append_refused", "{% set xs = [] %}{{ xs.append(1) }}", {}),
    ("namespace_underscore_refused", "{% set ns = namespace() %}{% set ns._x = 1 %}", {}),
    ("set_attr_on_dict_refused", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("unpack_error", "{% set a, b = [1, 2, 3] %}", {}),
    ("division_by_zero", "{{ 1 / 0 }}", {}),
    ("string_plus_int_error", "{{ 'a' + 1 }}", {}),
    ("call_non_callable", "{{ 'a'() }}", {}),
    ("none_attribute", "{{ n.x }}|{{ n.x is defined }}", {"n": None}),
    ("is_sequence_of_map", "{{ [1] | map('string') is sequence }}|{{ ([1] | map('string')) is iterable }}", {}),
    ("format_method", "{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{x.k}-{y[0]}'.format(x={'k': 1}, y=[9]) }}|{{ '{!r}'.format('q') }}|{{ '{{literal}}'.format() }}", {}),
    ("dict_views_print", "{{ d.keys() }}|{{ d.values() }}|{{ d.items() }}|{{ d.keys() | length }}|{{ 'a' in d.keys() }}", {"d": {"a": 1, "b": [2]}}),
    ("undefined_filters", "[{{ missing | upper }}][{{ missing | trim }}][{{ missing | join(',') }}][{{ missing | first is defined }}][{{ missing | sort }}][{{ missing | items | list }}][{{ missing | string }}][{{ missing | replace('a', 'b') }}][{{ missing | reverse | list }}]", {}),
    ("undefined_int_error", "{{ missing | int }}", {}),
    ("undefined_compare_error", "{{ missing < 1 }}", {}),
    ("mixed_compare_error", "{{ 'a' < 1 }}", {}),
    ("sameas_and_misc_tests", "{{ none is sameas none }}{{ 1 is sameas 1 }}{{ [] is sameas [] }}{{ 'abc' is string }}{{ range(3) is sequence }}{{ {} is iterable }}{{ 5 is callable }}{{ range is callable }}{{ 3.0 is integer }}{{ 1 is boolean }}", {}),
    ("macro_closures", "{% macro outer(x) %}{% macro inner() %}[{{ x }}]{% endmacro %}{{ inner() }}{{ inner() }}{% endmacro %}{{ outer(1) }}{{ outer(2) }}{% for i in [7] %}{% macro m() %}{{ i }}{% endmacro %}{{ m() }}{% endfor %}", {}),
    ("caller_with_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x, loop.index) }}{% endfor %}{% endmacro %}{% call(item, n) each(['a', 'b']) %}{{ n }}:{{ item }};{% endcall %}", {}),
    ("aggregates", "{{ users | max(attribute='age') }}|{{ users | min(attribute='name') }}|{{ users | sum(attribute='age') }}|{{ ['B', 'a', 'b', 'A'] | unique | list }}|{{ ['B', 'a', 'b', 'A'] | unique(case_sensitive=true) | list }}|{{ ['b', 'A', 'a'] | max }}|{{ [[1, 2], [3]] | sum(start=[]) }}", {"users": [{"name": "x", "age": 3}, {"name": "a", "age": 9}]}),
    ("slices_more", "{{ xs[5:1:-1] }}|{{ xs[-3:] }}|{{ xs[:100] }}|{{ xs[::-2] }}|{{ 'abcdef'[::-2] }}|{{ (1, 2, 3)[1:] }}|{{ xs[1:-1] }}|{{ xs[none:2] }}", {"xs": [0, 1, 2, 3, 4, 5, 6]}),
    ("string_edge_methods", "{{ 'a,b,,c'.split(',') }}|{{ ''.split() }}|{{ '  x  y '.split(None, 1) }}|{{ ' a b c '.rsplit(None, 1) }}|{{ 'aXbXc'.partition('X') }}|{{ 'abc'.rpartition('z') }}|{{ 'ß'.upper() }}|{{ 'İ'.lower() | length }}|{{ 'hello world'.title() }}|{{ \"they're bill's\".title() }}|{{ 'x'.center(6, '*') }}|{{ 'ab'.center(5) }}|{{ '-5'.zfill(4) }}|{{ 'abcabc'.rfind('b') }}|{{ 'a\tb'.expandtabs is defined }}", {}),
    ("truthiness", "{% for v in [0, 0.0, '', [], {}, none, 'a', 1, [0], {'k': 0}, false, true] %}{{ 'T' if v else 'F' }}{% endfor %}|{{ [] | map('upper') | list | length }}{% if [] | select %}gen-true{% endif %}", {}),
    ("numeric_str", "{{ 1.0 ~ '' }}|{{ 3 * 1.5 }}|{{ 2 ** 0.5 }}|{{ 10 // 3.0 }}|{{ -1.5 | abs }}|{{ 1e100 }}|{{ 123456789012345678 }}|{{ 0.1 * 3 }}|{{ 1 / 3 }}|{{ 2 / 3 }}|{{ 5e-324 }}|{{ (0.1).real is defined }}", {}),
    ("tojson_numbers_and_keys", "{{ {1: 'a', 2.5: 'b', true: 'c', none: 'd'} | tojson }}|{{ [1e16, 1.5, -0.0, 3] | tojson }}|{{ 'a\u2028b\x7f' | tojson }}|{{ {'b': 1, 'a': {'d': 2, 'c': 3}} | tojson(indent=1, sort_keys=true) }}", {}),
    ("namespace_print_and_dict", "{% set ns = namespace(a=1, b='x') %}{{ ns }}|{% set ns2 = namespace({'k': 2}, z=3) %}{{ ns2.k }}{{ ns2.z }}|{{ dict([('a', 1), ('b', 2)]) }}|{{ dict({'x': 1}, y=2) }}", {}),
    ("loop_over_dict_items_filter", "{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %}|{% for k, v in d | items %}{{ k }}{% endfor %}|{% for x in d.values() %}{{ x }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("whitespace_edge", "  {%- if true -%}  a  {%- endif -%}  \n{{ 'b' }}  {# c #}  \n  {% if true %}\n  x\n  {%- endif %}\n{%+ if true %} y{% endif %}", {}),
    ("nested_data_access", "{{ m.tool_calls[0].function.arguments.location }}|{{ m['tool_calls'][0]['function']['name'] }}|{{ m.tool_calls | length }}|{{ m.tool_calls[0].function.arguments | tojson }}|{{ m.tool_calls[0].function.arguments.items() | list }}", {"m": {"tool_calls": [{"function": {"name": "f", "arguments": {"location": "Paris", "unit": "c"}}}]}}),
    ("set_tuple_and_swap", "{% set a, b = 1, 2 %}{% set a, b = b, a %}{{ a }}{{ b }}{% set t = 1, %}{{ t }}", {}),
    ("conditional_chain_filters", "{{ x | default('d') | upper if x is defined else 'none' | upper }}|{{ -2 | abs }}|{{ not true == false }}|{{ 1 + 2 * 3 ** 2 }}|{{ (1 + 2) * 3 }}|{{ 'a' ~ 1 + 2 }}|{{ 2 * 3 ~ 4 }}", {"x": "v"}),
    ("unknown_filter_in_if_not_taken", "{% if false %}{{ x | from_json }}{% endif %}{{ 'a' if true else y | nope }}{% if false %}{% set z = 1 is nope %}{% endif %}ok", {}),
    ("unknown_filter_in_if_taken", "{% if true %}{{ '{}' | from_json }}{% endif %}", {}),
    ("unknown_filter_in_loop_in_if", "{% if false %}{% for x in [] %}{{ x | from_json }}{% endfor %}{% endif %}", {}),
    ("unknown_test_outside_if", "{{ 1 is nope }}", {}),
    ("markup_plus", "{{ \"it's \"|safe + \"<b>'q'</b>\" }}|{{ 'a&b' + ('<i>'|e) }}|{{ ('x'|safe + '<') + '>' }}|{{ '<' ~ ('>'|safe) }}", {}),
    ("messages_like_chatml", "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True}),
]


def semantics_cases():
    from transformers.utils.chat_template_utils import _compile_jinja_template

    cases = []
    for name, template, variables in SEMANTICS:
        entry = {"name": name, "template": template, "variables": json.dumps(variables, ensure_ascii=False)}
        try:
            entry["rendered"] = _compile_jinja_template(template).render(**variables)
        except Exception as e:  # noqa: BLE001 - every exception is an expected outcome here
            entry["error"] = {"type": type(e).__name__, "message": str(e)}
        cases.append(entry)
    return cases


def qwen2_special_tokens():
    """transformers' special_tokens_map for the qwen2 config, and the template variables it implies."""
    from transformers import AutoTokenizer

    # The full tokenizer (tokenizer.json, 7 MB) stays in the shared folder; only its config is a fixture.
    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, "..", "shared", "tokenizers", "qwen2"))
    return tok.special_tokens_map


def extract(sdist):
    """Copies the templates out of the llama-cpp-python source package into templates/ (see FAMILIES)."""
    from gguf import GGUFReader

    os.makedirs(TEMPLATES, exist_ok=True)
    with tarfile.open(sdist) as tar:
        prefix = tar.getnames()[0].split("/")[0] + "/"

        def read(path):
            return tar.extractfile(prefix + path).read()

        for name, (source, _) in FAMILIES.items():
            path, _, field = source.partition(":")
            vendored = "vendor/llama.cpp/" + path if not path.startswith("llama_cpp/") else path
            data = read(vendored)
            if path.endswith(".gguf"):
                tmp = os.path.join(OUT, ".tmp.gguf")
                with open(tmp, "wb") as f:
                    f.write(data)
                reader = GGUFReader(tmp)
                fld = reader.fields[field]
                text = bytes(fld.parts[fld.data[0]]).decode()
                os.remove(tmp)
            elif path.endswith(".py"):
                text = json.loads(re.search(rf'^{field} = (".*")$', data.decode(), re.M).group(1))
            elif path.endswith(".cpp"):
                block = data.decode().split(f'"{field}"', 1)[1]
                literal = re.search(r'template_str= \*/ (".*?[^\\]"),\n', block, re.S).group(1)
                text = json.loads(literal)
            else:
                text = data.decode()
            with open(os.path.join(TEMPLATES, name + ".jinja"), "w", encoding="utf-8") as f:
                f.write(text)
        # Command-R: its GGUF keeps the list-form chat_template of tokenizer_config.json (default, tool_use, rag).
        tmp = os.path.join(OUT, ".tmp.gguf")
        with open(tmp, "wb") as f:
            f.write(read("vendor/llama.cpp/models/ggml-vocab-command-r.gguf"))
        reader = GGUFReader(tmp)

        def field_text(key):
            fld = reader.fields[key]
            return bytes(fld.parts[fld.data[0]]).decode()

        tokens = reader.fields["tokenizer.ggml.tokens"]

        def token(key):
            fld = reader.fields[key]
            index = int(fld.parts[fld.data[0]][0])
            return bytes(tokens.parts[tokens.data[index]]).decode()

        config = {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": {"__type": "AddedToken", "content": token("tokenizer.ggml.bos_token_id"), "lstrip": False,
                          "normalized": False, "rstrip": False, "single_word": False},
            "eos_token": token("tokenizer.ggml.eos_token_id"),
            "pad_token": token("tokenizer.ggml.padding_token_id"),
            "chat_template": [{"name": "default", "template": field_text("tokenizer.chat_template")},
                              {"name": "tool_use", "template": field_text("tokenizer.chat_template.tool_use")},
                              {"name": "rag", "template": field_text("tokenizer.chat_template.rag")}],
        }
        os.remove(tmp)
        os.makedirs(os.path.join(OUT, "command-r"), exist_ok=True)
        with open(os.path.join(OUT, "command-r", "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=2)
            f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extract", metavar="SDIST", help="copy the templates out of llama_cpp_python-0.3.36.tar.gz first")
    args = parser.parse_args()
    if args.extract:
        extract(args.extract)
    fixed_clock()
    cases = real_cases()
    with open(os.path.join(OUT, "cases.jsonl"), "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    semantics = semantics_cases()
    with open(os.path.join(OUT, "jinja_cases.jsonl"), "w", encoding="utf-8") as f:
        for c in semantics:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    with open(os.path.join(TEMPLATES, "special_tokens.json"), "w", encoding="utf-8") as f:
        json.dump({name: special for name, (_, special) in FAMILIES.items()}, f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(os.path.join(OUT, "qwen2", "special_tokens.json"), "w", encoding="utf-8") as f:
        json.dump(qwen2_special_tokens(), f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")
    errors = sum(1 for c in cases if "error" in c)
    print(f"cases.jsonl: {len(cases)} renderings ({errors} raise); jinja_cases.jsonl: {len(semantics)}", file=sys.stderr)


if __name__ == "__main__":
    main()
