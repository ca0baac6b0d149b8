"""The `moert` command: its commands and flags, run as a user runs them, against the fixtures' references.

Run with the staged binary: ``MOERT_CLI=build/bin/moert python3 -m pytest -q Tests/cli`` (``make test-cli`` does it).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Dict, List, Union

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "fixtures"
CLI = os.environ.get("MOERT_CLI", str(ROOT / "build" / "bin" / "moert"))


def moert(*args: Union[str, bytes], input_bytes: bytes = b"", check: bool = True,
          env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the command (with `env` added to the environment); with `check`, fails the test (showing stderr) unless it
    exits 0."""
    done = subprocess.run([CLI, *args], input=input_bytes, capture_output=True, timeout=300,
                          env=None if env is None else {**os.environ, **env})
    if check:
        assert done.returncode == 0, f"moert {args} exited {done.returncode}: {done.stderr.decode()}"
    return done


def read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    """The tensors of a safetensors file (F32, I32, and U8: quantized weights)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = {"F32": np.float32, "I32": np.int32, "U8": np.uint8}[entry["dtype"]]
        out[name] = np.frombuffer(data[base + begin : base + end], dtype=dtype).reshape(entry["shape"])
    return out


def reference(fixture: str) -> Dict[str, np.ndarray]:
    return read_safetensors(FIXTURES / fixture / "reference.safetensors")


def ids(values: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in values)


@pytest.mark.parametrize("fixture", ["mixtral", "qwen2_moe", "olmoe", "qwen3_moe_fp8", "deepseek_v2", "deepseek_v2_lite",
                                     "deepseek_v2_group", "deepseek_v3", "deepseek_v3_dense", "glm4_moe", "gpt_oss",
                                     "gpt_oss_mxfp4", "mixtral_window", "qwen2_moe_window"])
def test_run_writes_the_logits_of_transformers(fixture: str, tmp_path: Path) -> None:
    ref = reference(fixture)
    out = tmp_path / "logits.npy"
    moert("run", "--model", str(FIXTURES / fixture), "--tokens", ids(ref["prompt"]), "--logits", str(out))
    logits = np.load(out)
    expected = ref["logits"].reshape(logits.shape)
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("fixture", ["mixtral", "qwen3_moe", "deepseek_v2_lite", "deepseek_v3", "glm4_moe", "gpt_oss",
                                     "gpt_oss_mxfp4", "mixtral_window", "qwen2_moe_window"])
def test_generate_tokens_is_the_greedy_continuation(fixture: str) -> None:
    ref = reference(fixture)
    n = len(ref["greedy"])
    done = moert("generate", "--model", str(FIXTURES / fixture), "--tokens", ids(ref["prompt"]), "--max-new", str(n),
                 "--ignore-eos")
    assert done.stdout.decode().split() == [str(int(t)) for t in ref["greedy"]]


def test_info_describes_the_attention_and_its_cache() -> None:
    mla = moert("info", "--model", str(FIXTURES / "deepseek_v2")).stdout.decode()
    assert "multi-head latent (MLA): 4 heads, q_lora_rank 24, kv_lora_rank 32" in mla
    # kv_lora_rank + qk_rope_head_dim values per token and layer, 3 layers of float32: 3 * 40 * 4 bytes
    assert "kv_lora_rank 32 + qk_rope_head_dim 8 = 40 values per token and layer" in mla
    assert "f32 480," in mla and "yarn factor 4.0" in mla
    gqa = moert("info", "--model", str(FIXTURES / "mixtral")).stdout.decode()
    assert "grouped-query (GQA): 4 query heads, 2 key/value, head_dim 16" in gqa
    assert "f32 512," in gqa  # 2 layers of keys and values, 2 x 2 x 16 float32 each


def test_info_and_its_flags() -> None:
    done = moert("info", "--model", str(FIXTURES / "mixtral"), "--memory", "--no-mmap", "--threads", "1")
    text = done.stdout.decode()
    assert "MixtralForCausalLM" in text and "experts" in text and "expert cache" in text


def test_trace_writes_every_routing_decision(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    moert("trace", "--model", str(FIXTURES / "mixtral"), "--tokens", "1,2,3,4", "--out", str(out))
    trace = json.loads(out.read_text())
    assert trace["tokens"] == [1, 2, 3, 4] and len(trace["records"]) == 4 * len(trace["layers"])
    assert all(len(r["experts"]) == 2 for r in trace["records"])


def test_bench_prints_its_lines() -> None:
    text = moert("bench", "--model", str(FIXTURES / "mixtral"), "--prompt", "8", "--decode", "4", "--repeat", "1").stdout.decode()
    assert "prefill 8 tokens" in text and "decode  4 tokens" in text
    assert "kernel   gemv.f32 " in text and "cpu      " in text


def kernel_lines(text: str) -> Dict[str, tuple]:
    """The `kernel PRODUCT KERNEL (REASON...)` lines of `moert info`: product -> (kernel, reason)."""
    lines = {}
    for line in text.splitlines():
        if line.startswith("kernel "):
            product, kernel, why = line.split(None, 3)[1:]
            lines[product] = (kernel, why.strip("(").split(":")[0].rstrip(")"))
    return lines


def test_kernels_are_measured_once_then_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "kernels.tsv"
    env = {"MOERT_KERNEL_CACHE": str(cache)}
    first = kernel_lines(moert("info", "--model", str(FIXTURES / "mixtral_bf16"), env=env).stdout.decode())
    assert {"gemv.bf16", "gemm.bf16", "attention.prefill", "attention.decode", "swiglu"} <= set(first)
    assert {why for _, why in first.values()} <= {"measured", "only"}
    measured = [p for p, (_, why) in first.items() if why == "measured"]
    available = moert("kernels", "--available").stdout.decode().split()
    if len(available) > 1:
        assert measured and cache.exists()
    second = kernel_lines(moert("info", "--model", str(FIXTURES / "mixtral_bf16"), env=env).stdout.decode())
    for product, (kernel, why) in first.items():
        assert second[product] == (kernel, "cached" if why == "measured" else why)
    # Caching off: the table decides, nothing is measured.
    off = moert("info", "--model", str(FIXTURES / "mixtral_bf16"), env={"MOERT_KERNEL_CACHE": "off"}).stdout.decode()
    assert {why for _, why in kernel_lines(off).values()} <= {"table", "only"} and "spent measuring" not in off


def test_moert_kernels_forces_and_refuses(tmp_path: Path) -> None:
    env = {"MOERT_KERNEL_CACHE": "off", "MOERT_KERNELS": "gemv=portable,swiglu=portable"}
    lines = kernel_lines(moert("info", "--model", str(FIXTURES / "mixtral_bf16"), env=env).stdout.decode())
    assert lines["gemv.bf16"] == ("portable", "forced") and lines["swiglu"] == ("portable", "forced")
    listing = moert("kernels", env=env).stdout.decode()
    assert "gemv.q4_0" in listing and "forced: MOERT_KERNELS=gemv=portable" in listing
    for value, message in [("avx3", "MOERT_KERNELS: 'avx3' is not KERNEL or PRODUCT=KERNEL"),
                           ("gemv.q8_0=blas", "gemv.q8_0 cannot run blas")]:
        done = moert("info", "--model", str(FIXTURES / "mixtral"), check=False, env={"MOERT_KERNELS": value})
        err = done.stderr.decode()
        assert done.returncode == 1 and err.startswith("moert: error: ") and message in err and err.count("\n") == 1, err
    # MOERT_AVX512=0 keeps working: no product runs AVX-512.
    text = moert("info", "--model", str(FIXTURES / "mixtral"), env={"MOERT_AVX512": "0", "MOERT_KERNEL_CACHE": "off"})
    assert all(kernel != "avx512" for kernel, _ in kernel_lines(text.stdout.decode()).values())
    assert "avx512" not in moert("kernels", "--available", env={"MOERT_AVX512": "0"}).stdout.decode()


@pytest.mark.parametrize("args, message", [
    (["frobnicate"], "unknown command"),
    (["run", "--model", str(FIXTURES / "mixtral"), "--tokens", ""], "--tokens needs at least one token id"),
    (["run", "--model", str(FIXTURES / "mixtral"), "--tokens", "1", "--bogus", "2"], "unknown argument"),
    (["run", "--model", str(FIXTURES / "mixtral"), "--tokens", "1,99999"], "outside [0, 256)"),
    (["generate", "--model", str(FIXTURES / "mixtral"), "--tokens", "1", "--moe-top-k", "0"], "--moe-top-k"),
    (["quantize", "--model", str(FIXTURES / "mixtral"), "--out", "/tmp/unused", "--type", "q3_k"], "unknown type 'q3_k'"),
    (["quantize", "--model", str(FIXTURES / "mixtral"), "--out", "/tmp/unused", "--type", "q4_0", "--bits", "5"],
     "--calibration and --bits go together"),
    (["quantize", "--model", str(FIXTURES / "mixtral"), "--out", "/tmp/unused", "--type", "q4_0", "--tensor-type", "experts"],
     "--tensor-type takes PATTERN=TYPE"),
    (["quantize", "--model", str(FIXTURES / "mixtral"), "--out", "/tmp/unused", "--type", "q4_0", "--tensor-type",
      "experts=q2_0"], "unknown type 'q2_0'"),
    (["quantize", "--model", str(FIXTURES / "mixtral"), "--out", "/tmp/unused", "--type", "q4_0", "--tensor-type",
      "nothing_like_this=q8_0"], "matches no tensor"),
    (["perplexity", "--model", str(FIXTURES / "mixtral"), "--file", str(FIXTURES / "perplexity" / "genesis.txt"),
      "--ctx", "1"], "--ctx must be at least 2"),
])
def test_bad_input_is_one_line_and_a_nonzero_status(args: List[str], message: str) -> None:
    done = moert(*args, check=False)
    assert done.returncode != 0
    err = done.stderr.decode()
    assert err.startswith("moert: error: ") and message in err and err.count("\n") == 1, err


def test_every_command_has_help() -> None:
    text = moert("--help").stdout.decode()
    commands = [line.split()[0] for line in text.split("commands:")[1].splitlines() if line.startswith("  ")]
    assert "run" in commands and "generate" in commands
    for command in commands:
        assert "usage: moert " + command in moert(command, "--help").stdout.decode()


# --------------------------------------------------------------------------------------------------------------
# Text commands (pinned: tokenize, detokenize, render-chat, generate --prompt, chat), against tokenizers and
# transformers (Tests/fixtures/tokenizers/*/cases.jsonl and chat_cases.jsonl, tools/make_tokenizer_fixtures.py)
# --------------------------------------------------------------------------------------------------------------

TOKENIZERS = FIXTURES / "tokenizers"


def jsonl(path: Path) -> List[dict]:
    """One JSON value per line; only "\\n" ends a line (the texts hold other line separators)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def cases(name: str) -> List[dict]:
    return [c for c in jsonl(TOKENIZERS / name / "cases.jsonl") if not c.get("decode_only")]


@pytest.mark.parametrize("name", ["qwen2", "llama-spm"])
@pytest.mark.parametrize("source", ["--tokenizer", "--model"])
def test_tokenize_a_file_as_tokenizers_encodes(name: str, source: str, tmp_path: Path) -> None:
    where = str(TOKENIZERS / name / "tokenizer.json") if source == "--tokenizer" else str(TOKENIZERS / name)
    for c in cases(name)[:6]:
        path = tmp_path / "text.txt"
        path.write_bytes(c["text"].encode("utf-8"))
        plain = moert("tokenize", source, where, "--file", str(path)).stdout.decode()
        assert plain.endswith("\n") and plain.split() == [str(i) for i in c["ids"]], c["text"]
        special = moert("tokenize", source, where, "--file", str(path), "--add-special").stdout.decode()
        assert special.split() == [str(i) for i in c["ids_special"]], c["text"]


@pytest.mark.parametrize("name", ["qwen2", "llama-spm"])
def test_batch_forms(name: str, tmp_path: Path) -> None:
    all_cases = cases(name)
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps(c["text"]) + "\n" for c in all_cases), encoding="utf-8")
    tokenizer = str(TOKENIZERS / name / "tokenizer.json")
    for flag, key in (([], "ids"), (["--add-special"], "ids_special")):
        lines = moert("tokenize", "--tokenizer", tokenizer, "--jsonl", str(texts), *flag).stdout.decode().split("\n")
        assert lines[-1] == "" and len(lines) == len(all_cases) + 1
        for line, c in zip(lines, all_cases):
            assert line.split() == [str(i) for i in c[key]], c["text"]
    ids = tmp_path / "ids.jsonl"
    ids.write_text("".join(json.dumps(c["ids"]) + "\n" for c in all_cases), encoding="utf-8")
    out = moert("detokenize", "--tokenizer", tokenizer, "--jsonl", str(ids)).stdout.decode()
    assert [json.loads(line) for line in out.split("\n")[:-1]] == [c["decoded"] for c in all_cases]


@pytest.mark.parametrize("name", ["qwen2", "llama-spm"])
def test_detokenize_prints_the_text_and_a_newline(name: str) -> None:
    tokenizer = str(TOKENIZERS / name / "tokenizer.json")
    for c in cases(name)[:6]:
        out = moert("detokenize", "--tokenizer", tokenizer, "--tokens", ",".join(map(str, c["ids"]))).stdout
        assert out == (c["decoded"] + "\n").encode("utf-8"), c["text"]
    assert moert("detokenize", "--tokenizer", tokenizer, "--tokens", "").stdout == b"\n"


def test_render_chat_prints_exactly_what_transformers_renders(tmp_path: Path) -> None:
    for c in jsonl(TOKENIZERS / "qwen2" / "chat_cases.jsonl"):
        messages = tmp_path / "messages.json"
        messages.write_text(json.dumps(c["messages"]), encoding="utf-8")
        flag = ["--add-generation-prompt"] if c["add_generation_prompt"] else []
        out = moert("render-chat", "--model", str(TOKENIZERS / "qwen2"), "--messages", str(messages), *flag).stdout
        assert out == c["rendered"].encode("utf-8")


def test_generate_text_streams_the_greedy_continuation() -> None:
    """The mixtral fixture's tokenizer maps id b to byte b, so `generate --prompt` must print the bytes of the ids
    `generate --tokens` picks (checked against transformers above), decoded as tokenizers would (bad bytes as U+FFFD)."""
    text = "Hi, MoE!"
    ids = moert("tokenize", "--model", str(FIXTURES / "mixtral"), "--text", text).stdout.decode().split()
    assert ids == [str(b) for b in text.encode("ascii")]
    tokens = moert("generate", "--model", str(FIXTURES / "mixtral"), "--tokens", ",".join(ids), "--max-new", "8",
                   "--ignore-eos").stdout.decode().split()
    assert len(tokens) == 8
    out = moert("generate", "--model", str(FIXTURES / "mixtral"), "--prompt", text, "--max-new", "8", "--ignore-eos").stdout
    assert out == bytes(int(t) for t in tokens).decode("utf-8", errors="replace").encode("utf-8") + b"\n"


def test_chat_reads_stdin_until_it_ends() -> None:
    done = moert("chat", "--model", str(FIXTURES / "mixtral"), "--max-new", "4", input_bytes=b"hello\n/reset\nagain\n")
    assert done.stdout.count(b"\n") == 2


def test_chat_refuses_a_line_that_is_not_utf8_and_goes_on() -> None:
    model = str(FIXTURES / "mixtral")
    done = moert("chat", "--model", model, "--max-new", "4", input_bytes=b"hi\xff\nhello\n")
    assert "input line: invalid UTF-8 at byte 2; not sent" in done.stderr.decode()
    assert done.stdout == moert("chat", "--model", model, "--max-new", "4", input_bytes=b"hello\n").stdout


@pytest.mark.parametrize("args, message", [
    (["tokenize", "--model", str(FIXTURES / "mixtral")], "exactly one of --text, --file and --jsonl"),
    (["tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "--text", "x"], "/nonexistent/tokenizer.json"),
    (["detokenize", "--tokenizer", str(TOKENIZERS / "qwen2" / "tokenizer.json"), "--tokens", "999999999"], "999999999"),
    (["render-chat", "--model", str(FIXTURES / "qwen2_moe"), "--messages", "/dev/null"], "tokenizer.json"),
])
def test_text_commands_refuse_bad_input(args: List[str], message: str) -> None:
    done = moert(*args, check=False)
    assert done.returncode != 0 and message in done.stderr.decode(), done.stderr.decode()


def test_tokenize_names_the_offset_of_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff")
    done = moert("tokenize", "--tokenizer", str(TOKENIZERS / "qwen2" / "tokenizer.json"), "--file", str(path), check=False)
    assert done.returncode == 1 and "invalid UTF-8 at byte 3" in done.stderr.decode()


def test_arguments_that_are_not_utf8_are_refused() -> None:
    """Text given on the command line is checked as bytes, not turned into U+FFFD."""
    done = moert("tokenize", "--tokenizer", str(TOKENIZERS / "qwen2" / "tokenizer.json"), "--text", b"ok \xff", check=False)
    assert done.returncode == 2 and "argument 5 is not valid UTF-8 (invalid byte at offset 3)" in done.stderr.decode()
    assert done.stdout == b""


def test_generate_goes_past_the_context_with_context_shift() -> None:
    args = ["generate", "--model", str(FIXTURES / "mixtral"), "--tokens", "17,200,45,99,3,128,250", "--ctx", "16",
            "--max-new", "40", "--ignore-eos"]
    assert len(moert(*args).stdout.split()) == 16 - 7 + 1
    assert len(moert(*args, "--context-shift", "--keep", "2").stdout.split()) == 40


def test_chat_with_context_shift_goes_on_where_it_would_start_over() -> None:
    lines = b"hello there\nhow are you today\nwhat next\nand more\n"
    args = ["chat", "--model", str(FIXTURES / "mixtral"), "--ctx", "64", "--max-new", "12"]
    assert moert(*args, input_bytes=lines).stdout.count(b"no longer fits") == 3
    done = moert(*args, "--context-shift", input_bytes=lines)
    assert b"no longer fits" not in done.stdout and done.stdout.count(b"\n") == 4


@pytest.mark.parametrize("kv_type", ["f32", "f16", "bf16", "q8_0"])
def test_bench_depth_prints_one_line_per_depth(kv_type: str) -> None:
    model = FIXTURES / ("mixtral_hd64" if kv_type == "q8_0" else "mixtral")
    out = moert("bench", "--model", str(model), "--depth", "0,100", "--kv-type", kv_type, "--repeat", "1").stdout.decode()
    lines = [l for l in out.splitlines() if l.startswith("depth ")]
    assert [l.split()[1] for l in lines] == ["0", "100"]
    for line in lines:
        word = line.split()
        assert word[2] == "decode" and float(word[3]) > 0 and word[4] == "tok/s"
    # Depths after the first get their speed relative to it, from the rounds' paired bursts.
    ratios = [l for l in out.splitlines() if l.startswith("  speed / depth 0's ")]
    assert len(ratios) == 1 and 0 < float(ratios[0].split()[4]) < 10
    # Each depth's steps split into attention over the cache and the rest: with one round, the two add up to the
    # step time the speed gives (to the printed thousandths of a millisecond).
    splits = re.findall(r"^  attention ([\d.]+) ms per step, KV read at ([\d.]+) GB/s; the rest of the step ([\d.]+) ms",
                        out, re.M)
    assert len(splits) == 2
    for line, (attention, speed, rest) in zip(lines, splits):
        assert float(attention) >= 0 and float(speed) > 0 and float(rest) > 0
        assert abs(float(attention) + float(rest) - 1000 / float(line.split()[3])) <= 0.002 + 0.01 * float(rest)


def test_bench_bandwidth_pairs_decode_bursts_with_plain_reads() -> None:
    out = moert("bench", "--model", str(FIXTURES / "mixtral"), "--prompt", "8", "--decode", "4", "--repeat", "1",
                "--bandwidth").stdout.decode()
    assert re.search(r"^  decode  4 tokens  [\d.]+ tok/s", out, re.M)  # the pinned line stays
    line = re.search(r"^  bandwidth  ([\d.]+) GB/s median of 16 plain reads of 256 MiB", out, re.M)
    assert line and float(line.group(1)) > 0
    pairs = re.search(r"^  pairs   decode tok/s:read GB/s (.*)$", out, re.M).group(1).split()
    assert len(pairs) == 16 and all(float(x) > 0 for p in pairs for x in p.split(":"))


@pytest.mark.parametrize("args, message", [
    (["bench", "--depth", "10", "--bandwidth"], "--bandwidth does not go with --depth"),
    (["bench", "--depth", "100,x"], "--depth takes comma-separated token counts"),
    (["bench", "--depth", "500"], "exceed the model's context 512"),
    (["bench", "--depth", "100", "--ctx", "120"], "do not fit --ctx 120"),
    (["bench", "--depth", "10", "--prompt", "5"], "--prompt does not go with --depth"),
    (["generate", "--tokens", "1,2", "--kv-type", "q4"], "--kv-type must be one of f32, f16, bf16, q8_0, got 'q4'"),
    (["generate", "--tokens", "1,2", "--kv-type", "q8_0"], "multiple of 32; this model's is 16"),
    (["generate", "--tokens", "1,2", "--keep", "3"], "--keep needs --context-shift"),
    (["generate", "--tokens", "1,2", "--context-shift", "--keep", "5000"], "n_keep must be in [0, n_ctx 512)"),
])
def test_kv_and_depth_options_refuse_bad_values(args: List[str], message: str) -> None:
    done = moert(args[0], "--model", str(FIXTURES / "mixtral"), *args[1:], check=False)
    assert done.returncode != 0 and message in done.stderr.decode(), done.stderr.decode()


def test_info_reports_kv_bytes_per_token_and_context_shift() -> None:
    out = moert("info", "--model", str(FIXTURES / "mixtral")).stdout.decode()
    # 2 layers x keys and values x 2 key/value heads x 16 values x 4 bytes
    assert "                  bytes per token: f32 512, f16 256, bf16 256, q8_0 -" in out
    assert "context shift     yes" in out
    assert "sliding window" not in out


def test_info_reports_fixed_bytes_of_sliding_window_layers() -> None:
    out = moert("info", "--model", str(FIXTURES / "qwen2_moe_window")).stdout.decode()
    # 1 full layer x keys and values x 2 key/value heads x 16 values x 4 bytes; 2 windowed layers x 4 positions
    assert "                  bytes per token: f32 256, f16 128, bf16 128, q8_0 -" in out
    assert "sliding window    2 of 3 layers attend to the last 4 positions; fixed bytes: f32 2048, f16 1024" in out
    assert "context shift     no: 2 of the model's layers attend within a sliding window of 4 tokens" in out


def test_readme_first_command_prints_english() -> None:
    """The README's first command: the demo model continues "And God said" with at least 15 words, at least 70% of
    them in Debian's wamerican word list, without stopping early at an end-of-text token."""
    words_file = Path("/usr/share/dict/words")
    if not words_file.exists():
        pytest.skip("no word list: apt-get install wamerican (.ci/run installs it)")
    english = {line.strip().lower() for line in words_file.read_text(encoding="utf-8", errors="replace").splitlines()}
    done = moert("generate", "--model", str(ROOT / "models" / "demo"), "--prompt", "And God said", "--max-new", "40")
    words = [w for w in done.stdout.decode().replace("\n", " ").split() if w.strip(".,;:?!'()")]
    known = [w for w in words if w.strip(".,;:?!'()").lower() in english]
    assert len(words) >= 15 and len(known) >= 0.7 * len(words), done.stdout
    prompt = moert("tokenize", "--model", str(ROOT / "models" / "demo"), "--text", "And God said").stdout.split()
    ids = moert("generate", "--model", str(ROOT / "models" / "demo"), "--tokens", b",".join(prompt), "--max-new", "40")
    assert len(ids.stdout.split()) == 40 and b"0" not in ids.stdout.split()  # id 0 is <|endoftext|>


def test_perplexity_prints_transformers_figure_last() -> None:
    """`moert perplexity` (pinned): last line `perplexity X`, X as transformers computes it over the same windows — on
    the tiny fixtures, and on the demo model over Genesis 1 and over its whole held-out split (models/kjv-test.txt)."""
    cases = json.loads((FIXTURES / "perplexity" / "reference.json").read_text())["cases"]
    assert any(case["text"].endswith("models/kjv-test.txt") for case in cases)
    for case in cases:
        stride = ["--stride", str(case["stride"])] if case["stride"] else []
        # The held-out split (34k tokens) on one thread: seconds on an idle machine, and no slower on a busy one.
        threads = ["--threads", "1"] if case["tokens"] > 10000 else []
        done = moert("perplexity", "--model", str(FIXTURES / case["fixture"]), "--file",
                     str(FIXTURES / "perplexity" / case["text"]), "--ctx", str(case["ctx"]), *stride, *threads)
        lines = done.stdout.decode().strip().splitlines()
        assert any(line.startswith("accuracy ") and "next-token" in line for line in lines)
        last = lines[-1].split()
        assert last[0] == "perplexity" and len(last) == 2
        assert abs(float(last[1]) - case["perplexity"]) <= 1e-4 * case["perplexity"]
        assert len(last[1].replace(".", "").lstrip("0")) >= 7, "at least 7 significant digits"


def test_quantize_writes_llama_cpp_bytes_and_loads(tmp_path: Path) -> None:
    """`moert quantize` (pinned flags): the bytes of llama.cpp's quantizer (the fixture of tools/make_quant_fixtures.py),
    progress on stderr, a summary on stdout, and an output every command loads."""
    out = tmp_path / "q4"
    done = moert("quantize", "--model", str(FIXTURES / "mixtral"), "--out", str(out), "--type", "q4_0")
    assert "routed experts" in done.stdout.decode() and "q4_0" in done.stderr.decode()
    assert read_safetensors(out / "model.safetensors").keys() == read_safetensors(FIXTURES / "mixtral_q4_0" / "model.safetensors").keys()
    mine, theirs = read_safetensors(out / "model.safetensors"), read_safetensors(FIXTURES / "mixtral_q4_0" / "model.safetensors")
    for name in theirs:
        assert mine[name].dtype == theirs[name].dtype and np.array_equal(mine[name], theirs[name]), name
    assert "q4_0" in moert("info", "--model", str(out)).stdout.decode()
    moert("run", "--model", str(out), "--tokens", "1,2,3", "--logits", str(tmp_path / "l.npy"), "--expert-budget", "50%")
    again = moert("quantize", "--model", str(FIXTURES / "mixtral"), "--out", str(out), "--type", "q8_0", check=False)
    assert again.returncode != 0 and "--force" in again.stderr.decode()


def test_quantize_q4_k_falls_back_to_q4_0_on_rows_of_64(tmp_path: Path) -> None:
    """--type q4_k on the mixtral fixture, whose rows (64 columns) are not whole 256-weight super-blocks: every
    tensor gets q4_0 instead (the same size), byte for byte llama.cpp's, and the summary says why; the q4_k fixture
    (rows of 256, llama.cpp's bytes) shows its types in `moert info` and runs under a residency budget."""
    out = tmp_path / "q4k"
    done = moert("quantize", "--model", str(FIXTURES / "mixtral"), "--out", str(out), "--type", "q4_k")
    assert "not whole blocks of 256: q4_0 instead of q4_k" in done.stdout.decode() + done.stderr.decode()
    mine, theirs = read_safetensors(out / "model.safetensors"), read_safetensors(FIXTURES / "mixtral_q4_0" / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for name in theirs:
        assert np.array_equal(mine[name], theirs[name]), name
    info = moert("info", "--model", str(FIXTURES / "mixtral_q4_k")).stdout.decode()
    assert "q4_k" in info
    moert("run", "--model", str(FIXTURES / "mixtral_q4_k"), "--tokens", "1,2,3", "--expert-budget", "50%")


def test_quantize_tensor_types_and_bits(tmp_path: Path) -> None:
    """--tensor-type PATTERN=T (repeatable, first match wins) and per-expert bits down to q3_0: the written entry
    lists the asked types, the notes the rules, and the output loads and runs."""
    out = tmp_path / "rules"
    moert("quantize", "--model", str(FIXTURES / "mixtral"), "--out", str(out), "--type", "q4_0",
          "--tensor-type", r"layers\.0\..*experts\.1\.=q8_0", "--tensor-type", "experts=q3_0")
    quantization = json.loads((out / "config.json").read_text())["moert"]["quantization"]
    experts = {k: v for k, v in quantization["tensors"].items() if ".experts." in k}
    assert experts and all(v == ("q8_0" if "layers.0.block_sparse_moe.experts.1." in k else "q3_0") for k, v in experts.items())
    assert quantization["notes"]["tensor_types"] == [r"layers\.0\..*experts\.1\.=q8_0", "experts=q3_0"]
    moert("run", "--model", str(out), "--tokens", "1,2,3")
    mixed = tmp_path / "bits"
    done = moert("quantize", "--model", str(FIXTURES / "mixtral"), "--out", str(mixed), "--type", "q4_0",
                 "--calibration", str(FIXTURES / "perplexity" / "genesis.txt"), "--bits", "4.0")
    assert "per-expert bits: 4.0 bits" in done.stdout.decode()
    types = json.loads((mixed / "config.json").read_text())["moert"]["quantization"]["tensors"]
    assert {v for k, v in types.items() if ".experts." in k} == {"q3_0", "q4_0"}
    moert("run", "--model", str(mixed), "--tokens", "1,2,3")
