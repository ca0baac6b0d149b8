#!/usr/bin/env python3
"""Build the seeds of the `tokenizer` fuzz target (FuzzTokenizer.swift) from Tests/fixtures/tokenizers.

    corpus/tokenizer/doc-<fixture>-<n>   a shrunken copy of each small fixture's tokenizer.json (the first 120
                                         vocabulary ids, the <0xXX> byte tokens, the merges among kept tokens,
                                         every other section as it is), the line #moert-fuzz-text#, a text
    corpus/tokenizer/text-<fixture>-<n>  one byte choosing a fixed tokenizer (its index in FuzzTokenizer.swift's
                                         fixedTokenizers), then a text

Standard library only. Run from anywhere:

    python3 Tests/fuzz/make_tokenizer_corpus.py
"""

import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "tokenizers"
OUT = HERE / "corpus" / "tokenizer"
SEPARATOR = "\n#moert-fuzz-text#\n"
# The order of fixedTokenizers in FuzzTokenizer.swift.
FIXED = ["qwen2", "llama-spm", "bytelevel", "bytelevel-split", "metaspace-first", "metaspace-always", "splits-invert"]
SMALL = ["bytelevel", "bytelevel-split", "metaspace-first", "metaspace-always", "metaspace-never", "splits", "splits-invert"]
TEXTS = [
    "Hello, world! 123 <s>  x",
    " <|user|>  hi [MASK] e\u0301 \u00e9 \uff21\uff22\uff23 \u4f60\u597d \U0001F44D\U0001F3FD\t\r\n",
    "\u2581a\u2581\u2581b \u180e\u3000\u00a0 aaaa bbbb <|bos|>",
]


def shrink(document):
    model = document["model"]
    vocab = {t: i for t, i in model["vocab"].items() if i < 120 or (t.startswith("<0x") and len(t) == 6)}
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ")
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["vocab"], model["merges"] = vocab, merges
    return document


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    for name in SMALL:
        document = shrink(json.loads((FIXTURES / name / "tokenizer.json").read_text(encoding="utf-8")))
        compact = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        for n, text in enumerate(TEXTS):
            (OUT / f"doc-{name}-{n}").write_bytes((compact + SEPARATOR + text).encode("utf-8"))
    for index, name in enumerate(FIXED):
        for n, text in enumerate(TEXTS):
            (OUT / f"text-{name}-{n}").write_bytes(bytes([index]) + text.encode("utf-8"))
    print(f"{len(list(OUT.iterdir()))} seeds in {OUT}")


if __name__ == "__main__":
    main()
