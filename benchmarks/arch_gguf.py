#!/usr/bin/env python3
"""llama.cpp's GGUF files of the models of benchmarks/arch_models.py, written by llama.cpp's own converter.

    python benchmarks/arch_gguf.py [--preset small|tiny] [--archs deepseek_v2,deepseek_v3,gpt_oss,glm4_moe]
                                   [--types f32,f16] [--quant q8_0] [--llama-cpp DIR] [--work DIR]

Writes DIR/<arch>-<preset>/model-<type>.gguf from hf/ for each --types (convert_hf_to_gguf.py --outtype) and
model-<quant>.gguf from the f16 GGUF for each --quant (llama.cpp's llama_model_quantize, as compare.py --quant does).
The converter is not part of moert: --llama-cpp (or $LLAMA_CPP_DIR) is a llama.cpp source tree with
convert_hf_to_gguf.py, conversion/ and gguf-py/, the one llama-cpp-python was built from so that the two agree;
without either, the first match of /tmp/pip-download-*/llama-cpp-python_*/vendor/llama.cpp (the tree pip unpacks
while building llama-cpp-python from source) is used. Run it with the peer venv's python (torch, transformers,
numpy; the tree's own gguf-py is put first on the path).

Two changes to the converter, made in this process only. First, the random models carry the Llama SentencePiece tokenizer
(tokenizer.json with byte fallback) instead of their families' own, which each family's set_vocab rejects
(DeepSeek-V2/V3 and gpt-oss read a byte-level BPE and look its pre-tokenizer up by hash; GLM-4.5 looks for its
[gMASK] tokens). So the four model classes write the vocabulary with the converter's own _set_vocab_llama_hf, as
llama.cpp's "llama" (SentencePiece) tokenizer. The benchmark feeds token ids, so the tokenizer plays no part in the
figures. Second, a DeepSeek-V2 without query compression (q_lora_rank null, as DeepSeek-V2-Lite) gets
attention.q_lora_rank = 0 written: the converter writes the key only when the rank is set, and llama.cpp then reads
it unless the model has 26 or 27 layers (how it recognises V2-Lite), so an 8-layer model without the key fails to
load ("key not found in model: deepseek2.attention.q_lora_rank"); with 0 it takes the uncompressed query projection
(attn_q), as for V2-Lite.
"""
import argparse
import glob
import os
import sys
from pathlib import Path

from arch_models import ARCHS, SIZES, default_work, model_dir

FALLBACK = "/tmp/pip-download-*/llama-cpp-python_*/vendor/llama.cpp"
HF_CLASSES = {"deepseek_v2": "DeepseekV2ForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM",
              "glm4_moe": "Glm4MoeForCausalLM", "gpt_oss": "GptOssForCausalLM"}


def llama_cpp_tree(given: str = None) -> Path:
    """The llama.cpp source tree: `given`, else $LLAMA_CPP_DIR, else the first match of FALLBACK."""
    path = given or os.environ.get("LLAMA_CPP_DIR") or next(iter(sorted(glob.glob(FALLBACK))), None)
    if not path or not (Path(path) / "convert_hf_to_gguf.py").exists():
        sys.exit(f"no llama.cpp tree with convert_hf_to_gguf.py (given {path!r}); pass --llama-cpp DIR or set "
                 f"LLAMA_CPP_DIR (fallback: {FALLBACK})")
    return Path(path)


def load_converter(tree: Path):
    """Imports the tree's convert_hf_to_gguf (with its gguf-py) and makes the benchmark architectures write the
    SentencePiece vocabulary (see the module docstring). Returns the converter module."""
    sys.path[:0] = [str(tree), str(tree / "gguf-py")]
    import convert_hf_to_gguf
    from conversion import get_model_class
    for hf_class in HF_CLASSES.values():
        cls = get_model_class(hf_class)
        cls.set_vocab = cls._set_vocab_llama_hf
    deepseek = get_model_class(HF_CLASSES["deepseek_v2"])
    set_parameters = deepseek.set_gguf_parameters

    def set_gguf_parameters(self):
        set_parameters(self)
        if self.hparams.get("q_lora_rank") is None:
            self.gguf_writer.add_q_lora_rank(0)

    deepseek.set_gguf_parameters = set_gguf_parameters
    return convert_hf_to_gguf


def convert(converter, hf: Path, out: Path, outtype: str) -> None:
    """One run of the converter's main() on `hf`, as `convert_hf_to_gguf.py hf --outtype T --outfile out`."""
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(hf), "--outtype", outtype, "--outfile", str(out)]
    try:
        converter.main()
    finally:
        sys.argv = argv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=SIZES, default="small")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--types", default="f32,f16", help="converter output types (f32, f16, bf16, q8_0)")
    ap.add_argument("--quant", default="", help="llama_model_quantize types made from the f16 GGUF, e.g. q8_0")
    ap.add_argument("--llama-cpp", help="llama.cpp source tree (default $LLAMA_CPP_DIR, then " + FALLBACK + ")")
    ap.add_argument("--work", type=Path, default=default_work())
    args = ap.parse_args()
    converter = load_converter(llama_cpp_tree(args.llama_cpp))
    for arch in args.archs.split(","):
        d = model_dir(args.work, arch, args.preset)
        for t in filter(None, args.types.split(",")):
            convert(converter, d / "hf", d / f"model-{t}.gguf", t)
            print("wrote", d / f"model-{t}.gguf", flush=True)
        for kind in filter(None, args.quant.split(",")):
            from hf_to_gguf import llama_quantize
            llama_quantize(d / "model-f16.gguf", d / f"model-{kind}.gguf", kind)
            print("wrote", d / f"model-{kind}.gguf", flush=True)


if __name__ == "__main__":
    main()
