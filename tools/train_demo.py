#!/usr/bin/env python3
"""Train the demo MoE shipped in models/demo: a small Mixtral on the King James Bible, saved as a Hugging Face
directory that transformers and moert load.

    apt-get install bible-kjv                # the corpus (public domain: bible-kjv-text) and its `bible` program
    pip install torch transformers tokenizers safetensors
    python3 tools/train_demo.py [--out models/demo] [--steps N] [--threads 2]

What it does, reproducibly (fixed seeds, one process, `--threads` torch threads):
1. Reads every verse of the King James Version from Debian's `bible-kjv-text` (via `bible Gen1:1-Rev22:21`), one
   verse per line, chapters separated by a blank line. Every 30th chapter (chapters 30, 60, ... in canonical order)
   (39 of 1189) is held out as the test split, written to models/kjv-test.txt; the rest is the training split,
   kept in memory only (the script recreates it from the package).
2. Trains a byte-level BPE tokenizer (4096 tokens, GPT-2 pre-tokenization, one special token `<|endoftext|>`)
   with `tokenizers` on the training split.
3. Trains a Mixtral-architecture MoE (8 experts, top-2, softmax router renormalised over the chosen two; RMSNorm,
   rotary attention with grouped-query heads, SwiGLU experts) with AdamW on random 512-token windows of the
   training split, plus the Switch/Mixtral load-balancing loss. No end-of-text token is ever trained on, so
   generation does not stop by itself.
4. Saves `config.json`, `model.safetensors` (float16), `tokenizer.json`, `tokenizer_config.json` and
   `generation_config.json`, then checks the result: transformers loads it and gives the training model's logits
   (on the float16 weights) to 1e-4, and its tokenizer gives the `tokenizers` ids.

The default of 1000 steps (4 M tokens, about four passes over the training split) takes about 35 minutes on two
otherwise idle cores of a 2 GHz AMD EPYC of family 23 (1.75 minutes per 50 steps; 37.9 minutes measured with a
compile beside it for a few of them). The variants take 29 (moepp) to 57 (rmoe) minutes there.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 4096
EOS = "<|endoftext|>"
HELD_OUT_EVERY = 30
VARIANTS = ("base", "topp", "hash", "moepp", "rmoe")
TOP_P_THRESHOLD = 0.4  # the paper's default p*
TOP_P_ENTROPY = 1e-4   # weight of the router-entropy penalty of the top-p variant
HASH_WIDTH = 576       # ReLU experts with 2*H*576 weights: as many as a SwiGLU expert of width 384
MOEPP_EXTRA = 4        # MoE++: two constant experts, one copy, one zero after the FFN experts
GRU_WIDTH = 96         # RMoE: the GRU's state size r

# The model: about 9 M parameters (18 MB in float16), 3 M used per token.
CONFIG = dict(hidden_size=192, intermediate_size=384, num_hidden_layers=4, num_attention_heads=6,
              num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=512,
              rms_norm_eps=1e-5, rope_theta=10000.0)


def read_bible() -> list:
    """Every chapter of the KJV as (title, [verse text]), in canonical order."""
    try:
        out = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                             text=True).stdout
    except FileNotFoundError:
        sys.exit("train_demo: the corpus needs Debian's bible-kjv-text and its `bible` program (apt-get install bible-kjv)")
    chapters = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if line.startswith("  "):
            number, _, verse = line.strip().partition(" ")
            if not number.isdigit():
                sys.exit(f"train_demo: unexpected verse line {line!r}")
            chapters[-1][1].append(verse.strip())
        else:
            chapters.append((line.strip(), []))
    if len(chapters) != 1189 or sum(len(v) for _, v in chapters) != 31102:
        sys.exit(f"train_demo: expected 1189 chapters and 31102 verses, read {len(chapters)} chapters")
    return chapters


def split_corpus(chapters: list) -> tuple:
    """(training text, held-out text): every HELD_OUT_EVERY-th chapter is held out."""
    train, test = [], []
    for index, (_, verses) in enumerate(chapters, start=1):
        (test if index % HELD_OUT_EVERY == 0 else train).append("\n".join(verses))
    return "\n\n".join(train) + "\n", "\n\n".join(test) + "\n"


def train_tokenizer(text: str):
    """A byte-level BPE with GPT-2's split rules, VOCAB tokens including EOS (id 0)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOS], min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text.split("\n\n"), trainer=trainer)
    return tokenizer


def build_model(torch, vocab: int, variant: str = "base", hash_table=None):
    nn, F = torch.nn, torch.nn.functional
    c = CONFIG
    head_dim = c["hidden_size"] // c["num_attention_heads"]

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["rms_norm_eps"]) * self.weight

    def rope(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            h, kv = c["num_attention_heads"], c["num_key_value_heads"]
            self.q_proj = nn.Linear(c["hidden_size"], h * head_dim, bias=False)
            self.k_proj = nn.Linear(c["hidden_size"], kv * head_dim, bias=False)
            self.v_proj = nn.Linear(c["hidden_size"], kv * head_dim, bias=False)
            self.o_proj = nn.Linear(h * head_dim, c["hidden_size"], bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            h, kv = c["num_attention_heads"], c["num_key_value_heads"]
            q = self.q_proj(x).view(b, t, h, head_dim).transpose(1, 2)
            k = self.k_proj(x).view(b, t, kv, head_dim).transpose(1, 2)
            v = self.v_proj(x).view(b, t, kv, head_dim).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            k = k.repeat_interleave(h // kv, dim=1)
            v = v.repeat_interleave(h // kv, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(y.transpose(1, 2).reshape(b, t, h * head_dim))

    class Expert(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
            self.w3 = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
            self.w2 = nn.Linear(c["intermediate_size"], c["hidden_size"], bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class SparseMoE(nn.Module):
        """Mixtral's block: softmax over all experts, top-k, weights renormalised over the chosen k."""

        def __init__(self, index):
            super().__init__()
            self.gate = nn.Linear(c["hidden_size"], c["num_local_experts"], bias=False)
            self.experts = nn.ModuleList(Expert() for _ in range(c["num_local_experts"]))

        def forward(self, x, ids, state):
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            probs = F.softmax(self.gate(x), dim=-1, dtype=torch.float32)
            weights, chosen = probs.topk(c["num_experts_per_tok"], dim=-1)
            weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
            out = torch.zeros_like(x)
            for e, expert in enumerate(self.experts):
                rows, slot = (chosen == e).nonzero(as_tuple=True)
                if rows.numel():
                    out.index_add_(0, rows, expert(x[rows]) * weights[rows, slot, None])
            # Switch/Mixtral balance: E * sum_e (fraction of routed slots to e) * (mean router probability of e).
            fraction = F.one_hot(chosen, c["num_local_experts"]).float().mean(dim=(0, 1))
            self.balance = c["num_local_experts"] * (fraction * probs.mean(0)).sum()
            self.extra_loss = 0.0
            return out.view(shape), state

    def dispatch(x, experts, weights):
        """sum_e weights[:, e] * expert_e(x) over the rows with a non-zero weight; a None expert is never run."""
        out = torch.zeros_like(x)
        for e, expert in enumerate(experts):
            rows = weights[:, e].nonzero(as_tuple=True)[0]
            if expert is not None and rows.numel():
                out.index_add_(0, rows, expert(x[rows]) * weights[rows, e, None].to(x.dtype))
        return out

    def balance(probs, weights):
        """The Switch balance term over the experts actually routed to (any number per token)."""
        routed = (weights > 0).float()
        return probs.shape[-1] * (routed.sum(0) / routed.sum().clamp(min=1) * probs.mean(0)).sum()

    class TopPMoE(SparseMoE):
        """Top-p routing (Harder Tasks Need More Experts): keep the most probable experts until their cumulative
        probability first exceeds p*, weights = the kept probabilities (not renormalised). Trained with the
        paper's router-entropy penalty, which pushes the router towards confident (fewer-expert) choices. The
        gate and experts are the base block's."""

        def forward(self, x, ids, state):
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            probs = F.softmax(self.gate(x), dim=-1, dtype=torch.float32)
            ranked, order = probs.sort(dim=-1, descending=True)
            before = torch.cat((torch.zeros_like(ranked[:, :1]), ranked.cumsum(-1)[:, :-1]), dim=-1)
            keep = before <= TOP_P_THRESHOLD
            weights = torch.zeros_like(probs).scatter(1, order, ranked * keep)
            self.balance = balance(probs, weights)
            self.extra_loss = TOP_P_ENTROPY * -(probs * probs.clamp(min=1e-9).log()).sum(-1).mean()
            return dispatch(x, self.experts, weights).view(shape), state

    class ReluExpert(nn.Module):
        """Hash Layers' expert: W2 relu(W1 x + b1) + b2."""

        def __init__(self):
            super().__init__()
            self.linear1 = nn.Linear(c["hidden_size"], HASH_WIDTH)
            self.linear2 = nn.Linear(HASH_WIDTH, c["hidden_size"])

        def forward(self, x):
            return self.linear2(F.relu(self.linear1(x)))

    class HashMoE(nn.Module):
        """Hash Layers: expert table[token id], weight 1; the table is balanced over the training tokens."""

        def __init__(self, index):
            super().__init__()
            self.router = nn.Module()
            self.router.register_buffer("hash_table", hash_table)
            self.experts = nn.ModuleList(ReluExpert() for _ in range(c["num_local_experts"]))

        def forward(self, x, ids, state):
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            weights = F.one_hot(self.router.hash_table[ids.reshape(-1)], c["num_local_experts"]).float()
            self.balance, self.extra_loss = 0.0, 0.0
            return dispatch(x, self.experts, weights).view(shape), state

    class CopyExpert(nn.Module):
        def forward(self, x):
            return x

    class ConstantExpert(nn.Module):
        """MoE++ constant expert: alpha_0 x + alpha_1 v, alpha = softmax(W_c x) over two."""

        def __init__(self):
            super().__init__()
            self.constant = nn.Parameter(torch.zeros(c["hidden_size"]))
            self.wg = nn.Linear(c["hidden_size"], 2, bias=False)

        def forward(self, x):
            alpha = F.softmax(self.wg(x), dim=-1)
            return alpha[:, :1] * x + alpha[:, 1:] * self.constant

    class MoEPlusPlus(nn.Module):
        """MoE++: FFN experts, then two constant, one copy and one zero expert; logits get the previous MoE
        layer's logits through gate_map (the gating residual), are divided by their standard deviation, softmaxed;
        top-2; the zero expert's weight is set to 0 and the rest renormalised."""

        def __init__(self, index):
            super().__init__()
            n = c["num_local_experts"] + MOEPP_EXTRA
            self.router = nn.Module()
            self.router.wg = nn.Linear(c["hidden_size"], n, bias=False)
            if index > 0:
                self.router.gate_map = nn.Linear(n, n, bias=False)
            self.experts = nn.ModuleList([*(Expert() for _ in range(c["num_local_experts"])), ConstantExpert(),
                                          ConstantExpert(), CopyExpert(), nn.Identity()])

        def forward(self, x, ids, state):
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            logits = self.router.wg(x.float())
            if state is not None:
                logits = logits + self.router.gate_map(state)
            scaled = logits / logits.std(dim=-1, keepdim=True)
            probs = F.softmax(scaled, dim=-1)
            top, chosen = probs.topk(c["num_experts_per_tok"], dim=-1)
            top = top * (chosen != len(self.experts) - 1)
            weights = torch.zeros_like(probs).scatter(1, chosen, top / top.sum(-1, keepdim=True))
            self.balance, self.extra_loss = balance(probs, weights), 0.0
            experts = [*self.experts[:-1], None]
            return dispatch(x, experts, weights).view(shape), logits

    class GRUMoE(nn.Module):
        """RMoE: router logits from a GRU whose state runs from MoE layer to MoE layer (zero at the first) over a
        projection of each layer's input; Mixtral top-2 gating; plus a shared SwiGLU expert, mixed 0.5/0.5."""

        def __init__(self, index):
            super().__init__()
            self.weight1 = nn.Parameter(torch.empty(GRU_WIDTH, c["hidden_size"]))
            self.weight2 = nn.Parameter(torch.empty(c["num_local_experts"], GRU_WIDTH))
            self.experts = nn.ModuleList(Expert() for _ in range(c["num_local_experts"]))
            self.shared_expert = nn.Module()
            self.shared_expert.gate_proj = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
            self.shared_expert.up_proj = nn.Linear(c["hidden_size"], c["intermediate_size"], bias=False)
            self.shared_expert.down_proj = nn.Linear(c["intermediate_size"], c["hidden_size"], bias=False)

        def forward(self, x, ids, state):
            shape = x.shape
            x = x.reshape(-1, shape[-1])
            u = x @ self.weight1.t()
            h = gru(u, state if state is not None else torch.zeros_like(u))
            probs = F.softmax(h @ self.weight2.t(), dim=-1, dtype=torch.float32)
            top, chosen = probs.topk(c["num_experts_per_tok"], dim=-1)
            weights = torch.zeros_like(probs).scatter(1, chosen, top / top.sum(-1, keepdim=True))
            self.balance, self.extra_loss = balance(probs, weights), 0.0
            s = self.shared_expert
            shared = s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))
            out = 0.5 * dispatch(x, self.experts, weights) + 0.5 * shared
            return out.view(shape), h

    blocks = dict(base=SparseMoE, topp=TopPMoE, hash=HashMoE, moepp=MoEPlusPlus, rmoe=GRUMoE)
    gru = nn.GRUCell(GRU_WIDTH, GRU_WIDTH) if variant == "rmoe" else None

    class Layer(nn.Module):
        def __init__(self, index):
            super().__init__()
            self.input_layernorm = RMSNorm(c["hidden_size"])
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm(c["hidden_size"])
            self.block_sparse_moe = blocks[variant](index)

        def forward(self, x, cos, sin, ids, state):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            y, state = self.block_sparse_moe(self.post_attention_layernorm(x), ids, state)
            return x + y, state

    class Mixtral(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(vocab, c["hidden_size"])
            self.layers = nn.ModuleList(Layer(i) for i in range(c["num_hidden_layers"]))
            self.norm = RMSNorm(c["hidden_size"])
            self.lm_head = nn.Linear(c["hidden_size"], vocab, bias=False)
            if gru is not None:
                self.rnn_router = gru
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.02)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)
            inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
            angles = torch.outer(torch.arange(c["max_position_embeddings"], dtype=torch.float32), inv)
            angles = torch.cat((angles, angles), dim=-1)
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)

        def forward(self, ids):
            t = ids.shape[1]
            x = self.embed_tokens(ids)
            state = None
            for layer in self.layers:
                x, state = layer(x, self.cos[:t], self.sin[:t], ids, state)
            return self.lm_head(self.norm(x))

        def balance_loss(self):
            return sum(layer.block_sparse_moe.balance for layer in self.layers) / len(self.layers)

        def extra_loss(self):
            return sum(layer.block_sparse_moe.extra_loss for layer in self.layers)

        def hf_state_dict(self):
            """The weights under the names of a Hugging Face Mixtral checkpoint (plugin tensors under the names
            docs/model-format.md gives them; the GRU cell split into its six matrices and six biases)."""
            out = {}
            for name, tensor in self.state_dict().items():
                if name.startswith("rnn_router."):
                    kind, _, part = name[len("rnn_router."):].partition("_")  # weight_ih -> weight, ih
                    for i, gate in enumerate("rzn"):
                        out[f"model.rnn_router.{kind}_{part[0]}{gate}"] = tensor.chunk(3)[i]
                    continue
                out[name if name == "lm_head.weight" else "model." + name] = tensor
            return out

    return Mixtral()


def hf_config(vocab: int) -> dict:
    c = CONFIG
    return {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": vocab,
        "hidden_size": c["hidden_size"], "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"], "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["hidden_size"] // c["num_attention_heads"],
        "num_local_experts": c["num_local_experts"], "num_experts_per_tok": c["num_experts_per_tok"],
        "max_position_embeddings": c["max_position_embeddings"], "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"], "hidden_act": "silu", "sliding_window": None, "tie_word_embeddings": False,
        "attention_dropout": 0.0, "router_aux_loss_coef": 0.01, "output_router_logits": False,
        "bos_token_id": None, "eos_token_id": 0, "pad_token_id": None, "torch_dtype": "float16",
    }


def moert_section(variant: str) -> dict:
    """The moert section that makes the shipped plugins run `variant` (docs/model-format.md)."""
    e = CONFIG["num_local_experts"]
    if variant == "topp":
        return {"plugins": ["dynamic"], "router": {"kind": "topp", "params": {"threshold": TOP_P_THRESHOLD}}}
    if variant == "hash":
        return {"plugins": ["hash"], "router": {"kind": "hash"}, "experts": [{"kind": "hash.relu_ffn", "count": e}]}
    if variant == "moepp":
        return {"plugins": ["moepp"], "router": {"kind": "moepp", "params": {"use_logits_norm": True}},
                "experts": [{"kind": "ffn", "count": e}, {"kind": "moepp.constant", "count": 2},
                            {"kind": "moepp.copy", "count": 1}, {"kind": "moepp.zero", "count": 1}]}
    if variant == "rmoe":
        return {"plugins": ["gru"], "router": {"kind": "gru"},
                "shared_expert": {"intermediate_size": CONFIG["intermediate_size"], "weight": 0.5,
                                  "routed_weight": 0.5}}
    return {}


def balanced_hash_table(torch, ids, vocab: int):
    """Roller et al.'s balanced hash: ids by decreasing training frequency (ties: lower id first), each into the
    least-loaded bucket so far (ties: lowest bucket); ids never seen get a uniform random bucket (NumPy seed 0)."""
    import numpy as np
    counts = torch.bincount(ids, minlength=vocab).tolist()
    experts = CONFIG["num_local_experts"]
    load = [0] * experts
    table = np.random.default_rng(0).integers(0, experts, size=vocab)
    for token in sorted(range(vocab), key=lambda t: (-counts[t], t)):
        if counts[token] == 0:
            break
        bucket = min(range(experts), key=lambda b: (load[b], b))
        table[token] = bucket
        load[bucket] += counts[token]
    return torch.tensor(table, dtype=torch.long)


def save(model, tokenizer, out: Path, torch, variant: str = "base") -> None:
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to(torch.int32 if v.dtype == torch.long else torch.float16).contiguous()
               for k, v in model.hf_state_dict().items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = hf_config(tokenizer.get_vocab_size())
    if variant != "base":
        config["moert"] = moert_section(variant)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CONFIG["max_position_embeddings"],
        "eos_token": EOS, "bos_token": None, "unk_token": None, "pad_token": None,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": 0, "do_sample": False}, indent=2) + "\n")


def round_as_saved(model, out: Path, text: str, torch) -> list:
    """Rounds the model's floating weights to float16, as save() stored them, and returns the ids of the start of
    `text` (200 tokens at most) with the saved tokenizer: the input both checks compare logits on."""
    from tokenizers import Tokenizer
    model.load_state_dict({k: v.to(torch.float16).to(v.dtype) if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    return Tokenizer.from_file(str(out / "tokenizer.json")).encode(text[:1000], add_special_tokens=False).ids[:200]


def check(model, out: Path, text: str, torch) -> None:
    """transformers must load the directory and agree with the training model on the saved (float16) weights."""
    import transformers
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    hf.eval()
    ids = round_as_saved(model, out, text, torch)
    auto = transformers.AutoTokenizer.from_pretrained(out)
    if auto(text[:1000], add_special_tokens=False)["input_ids"][:200] != ids:
        sys.exit("train_demo: transformers' tokenizer disagrees with tokenizers")
    with torch.no_grad():
        ours = model(torch.tensor([ids]))
        theirs = hf(input_ids=torch.tensor([ids])).logits
    diff = (ours - theirs).abs().max().item()
    print(f"check: transformers logits differ by {diff:.2e} at most", file=sys.stderr)
    if diff > 1e-4:
        sys.exit("train_demo: the saved model does not match transformers")


def greedy(model, tokenizer, prompt: str, n: int, torch) -> str:
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids[-CONFIG["max_position_embeddings"]:]]))[0, -1].argmax()))
    return tokenizer.decode(ids)


def check_with_moert(model, out: Path, text: str, torch) -> None:
    """A variant runs only in moert (transformers has no such routers): its logits must match the training model's
    on the saved weights. Skipped, saying so, when build/bin/moert has not been built."""
    import numpy as np
    binary = ROOT / "build" / "bin" / "moert"
    if not binary.exists():
        print(f"check: skipped ({binary} not built; run `make`)", file=sys.stderr)
        return
    ids = round_as_saved(model, out, text, torch)
    logits_file = out / "check-logits.npy"
    subprocess.run([str(binary), "run", "--model", str(out), "--tokens", ",".join(map(str, ids)),
                    "--logits", str(logits_file)], check=True)
    theirs = torch.from_numpy(np.load(logits_file))
    logits_file.unlink()
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
    diff = (ours - theirs).abs().max().item()
    print(f"check: moert logits differ by {diff:.2e} at most", file=sys.stderr)
    if diff > 1e-3:
        sys.exit("train_demo: moert does not run the saved variant as it was trained")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=VARIANTS, default="base",
                    help="base: Mixtral top-2 (models/demo); the others need models/demo's tokenizer and are "
                         "written to models/demo-VARIANT: topp (top-p routing), hash (Hash Layers), moepp (MoE++), "
                         "rmoe (GRU router with a shared expert)")
    ap.add_argument("--out", type=Path, help="output directory (default: models/demo or models/demo-VARIANT)")
    ap.add_argument("--test-out", type=Path, default=ROOT / "models" / "kjv-test.txt",
                    help="where the held-out split is written")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8, help="windows per step")
    ap.add_argument("--seq", type=int, default=512, help="tokens per window")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--hidden", type=int, default=CONFIG["hidden_size"],
                    help="hidden size, a multiple of 32 (heads of 32 dimensions); another size than the shipped "
                         "model's is for experiments, e.g. rows of whole 256-value q4_k blocks (--hidden 256 "
                         "--intermediate 512)")
    ap.add_argument("--intermediate", type=int, default=CONFIG["intermediate_size"], help="experts' width")
    args = ap.parse_args()
    if args.hidden <= 0 or args.hidden % 32 or args.intermediate <= 0:
        sys.exit("train_demo: --hidden must be a positive multiple of 32 and --intermediate positive")
    CONFIG.update(hidden_size=args.hidden, intermediate_size=args.intermediate,
                  num_attention_heads=args.hidden // 32)
    base_dir = ROOT / "models" / "demo"
    out = args.out or (base_dir if args.variant == "base" else ROOT / "models" / f"demo-{args.variant}")

    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    os.environ.setdefault("RAYON_NUM_THREADS", "1")

    train_text, test_text = split_corpus(read_bible())
    args.test_out.parent.mkdir(parents=True, exist_ok=True)
    args.test_out.write_text(test_text)
    if args.variant == "base":
        tokenizer = train_tokenizer(train_text)
    else:
        from tokenizers import Tokenizer
        if not (base_dir / "tokenizer.json").exists():
            sys.exit(f"train_demo: the {args.variant} variant uses the base model's tokenizer: train the base first")
        tokenizer = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    data = torch.tensor(tokenizer.encode(train_text, add_special_tokens=False).ids, dtype=torch.long)
    print(f"corpus: {len(train_text)} characters, {len(data)} training tokens; held out {len(test_text)} "
          f"characters -> {args.test_out}", file=sys.stderr)

    vocab = tokenizer.get_vocab_size()
    table = balanced_hash_table(torch, data, vocab) if args.variant == "hash" else None
    model = build_model(torch, vocab, args.variant, table)
    params = sum(p.numel() for p in model.parameters())
    print(f"model ({args.variant}): {params / 1e6:.2f} M parameters", file=sys.stderr)
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.time()
    for step in range(1, args.steps + 1):
        lr = args.lr * (step / warmup if step <= warmup else
                        0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (args.steps - warmup))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,), generator=generator)
        batch = torch.stack([data[s:s + args.seq + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        total = loss + 0.01 * model.balance_loss() + model.extra_loss()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            elapsed = time.time() - started
            print(f"step {step}/{args.steps}  loss {loss.item():.3f}  lr {lr:.2e}  {elapsed / 60:.1f} min, "
                  f"eta {elapsed / step * (args.steps - step) / 60:.1f} min", file=sys.stderr, flush=True)

    model.eval()
    save(model, tokenizer, out, torch, args.variant)
    if args.variant == "base":
        check(model, out, test_text, torch)
    else:
        check_with_moert(model, out, test_text, torch)
    print("sample: " + greedy(model, tokenizer, "And God said", 40, torch), file=sys.stderr)
    print(f"saved {out} in {(time.time() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
