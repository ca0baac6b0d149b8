#!/usr/bin/env python3
"""How well can a decode step's experts be predicted before its attention runs?

    python benchmarks/expert_prediction.py MODEL_DIR [--tokens 128] [--seed 0]

For every MoE layer of a Hugging Face checkpoint (Mixtral, Qwen2/3-MoE, OLMoE), applies the layer's own gate to the
residual stream *before* the layer's attention (normalised with the layer's post-attention norm) and counts how many
of the top-k experts it picks are among those the router really picks after the attention. This is the predictor a
prefetching expert cache would use; the figure bounds what prefetching can gain. Needs torch and transformers.
"""
import argparse

import torch
from transformers import AutoModelForCausalLM


def gate_weight(layer):
    """The router's weight [experts, hidden], or None for a dense layer."""
    moe = layer.block_sparse_moe if hasattr(layer, "block_sparse_moe") else layer.mlp
    gate = getattr(moe, "gate", None)
    return gate.weight if gate is not None and gate.weight.dim() == 2 and gate.weight.shape[0] > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    model.eval()
    layers = model.model.layers
    after_attention = {}  # layer -> normalised residual after attention: the router's real input

    def recorder(i: int):
        def hook(module, inputs, output) -> None:  # returns None: a hook's return value replaces the output
            after_attention[i] = output.detach().clone()
        return hook

    hooks = [layer.post_attention_layernorm.register_forward_hook(recorder(i)) for i, layer in enumerate(layers)]
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, args.tokens), generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        for h in hooks:
            h.remove()
        k = model.config.num_experts_per_tok
        hits = total = 0
        for i, layer in enumerate(layers):
            w = gate_weight(layer)
            if w is None:
                continue
            before = layer.post_attention_layernorm(out.hidden_states[i])  # hidden_states[i]: input of layer i
            predicted = (before[0] @ w.T).topk(k).indices.tolist()
            chosen = (after_attention[i][0] @ w.T).topk(k).indices.tolist()
            hits += sum(len(set(p) & set(c)) for p, c in zip(predicted, chosen))
            total += k * len(chosen)
    experts = next(gate_weight(layer) for layer in layers if gate_weight(layer) is not None).shape[0]
    print(f"{args.model}: {hits / total:.1%} of predicted experts chosen by the router "
          f"({args.tokens} tokens, top-{k} of {experts}; chance {k / experts:.0%})")


if __name__ == "__main__":
    main()
