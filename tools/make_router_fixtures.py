#!/usr/bin/env python3
"""Reference routing decisions of transformers' own routers, for moert's built-in router kinds.

Each case builds the MoE block of one architecture with a tiny config (hidden 16, 8 or 16 experts) and runs its
router module on random tokens:

    deepseek_v2_greedy   DeepseekV2Moe(config).gate        softmax, topk_method greedy, routed_scaling_factor 2.5
    deepseek_v2_group    DeepseekV2Moe(config).gate        softmax, group_limited_greedy (n_group 4, topk_group 2)
    deepseek_v3_norm     DeepseekV3MoE(config).gate        sigmoid + e_score_correction_bias, n_group 4,
                                                           topk_group 2, norm_topk_prob, routed_scaling_factor 2.5
    deepseek_v3_plain    DeepseekV3MoE(config).gate        as above without norm_topk_prob, scaling 1
    glm4_moe             Glm4MoeMoE(config).gate           GLM-4.5's router (one group, norm, scaling 2.5)
    glm4_moe_group       Glm4MoeMoE(config).gate           8 experts in 4 groups, 1 kept, k 2
    gpt_oss              GptOssMLP(config).router          gate with bias, top-4 of the logits, softmax over the 4

(``route_tokens_to_experts`` of earlier transformers versions is folded into ``DeepseekV3TopkRouter.forward`` in
5.x; Glm4MoeTopkRouter.forward is the same code, which the script checks on one case.)  transformers' DeepSeek-V2
router never applies ``norm_topk_prob`` (it deletes it and always multiplies by ``routed_scaling_factor``); the V2
cases therefore run with ``norm_topk_prob`` false.

Every case writes ``Tests/fixtures/routers/<case>/``:

    model.safetensors      the block's router tensors under checkpoint names, ``model.layers.0.mlp.`` + the
                           module's state_dict key (``gate.weight`` [E, H], ``gate.e_score_correction_bias`` [E],
                           ``router.weight`` [E, H], ``router.bias`` [E]), float32
    reference.safetensors  x [T, H] float32 (the router's input), logits [T, E] float32 (router_logits),
                           experts [T, K] int32 and weights [T, K] float32 (the selection, ordered by expert id: torch
                           returns it unsorted); override_experts and override_weights [T, K + 1] the same with
                           num_experts_per_tok one larger (the top-k override), when the kept groups hold K + 1
    routing.json           the config keys the routing comes from, and the moert router kind that runs it

The gate weights, correction bias and inputs are seeded random values; a case draws tokens until it has T whose
every ranking (the kept groups, the selected experts) is decided by a clear gap, and it checks that the group limit
and the correction bias do change some token's selection (so the test would notice if moert ignored them).

Requires torch, transformers (5.x) and safetensors.  Run from anywhere:

    python3 tools/make_router_fixtures.py          # writes Tests/fixtures/routers/
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import DeepseekV2Config, DeepseekV3Config, Glm4MoeConfig, GptOssConfig
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
from transformers.models.glm4_moe.modeling_glm4_moe import Glm4MoeMoE
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "fixtures", "routers")
HIDDEN = 16
TOKENS = 24
PREFIX = "model.layers.0.mlp."
# Smallest gap between the last kept and the first dropped value of any ranking, relative to the values' scale.
MIN_GAP = 1e-3

COMMON = dict(hidden_size=HIDDEN, intermediate_size=32, moe_intermediate_size=8, num_attention_heads=2,
              num_key_value_heads=2, num_hidden_layers=1, vocab_size=32)

CASES = {
    "deepseek_v2_greedy": ("deepseek_v2", dict(n_routed_experts=16, num_experts_per_tok=3, topk_method="greedy",
                                               routed_scaling_factor=2.5, norm_topk_prob=False)),
    "deepseek_v2_group": ("deepseek_v2", dict(n_routed_experts=16, num_experts_per_tok=3,
                                              topk_method="group_limited_greedy", n_group=4, topk_group=2,
                                              routed_scaling_factor=2.5, norm_topk_prob=False)),
    "deepseek_v3_norm": ("deepseek_v3", dict(n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2,
                                             norm_topk_prob=True, routed_scaling_factor=2.5)),
    "deepseek_v3_plain": ("deepseek_v3", dict(n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2,
                                              norm_topk_prob=False, routed_scaling_factor=1.0)),
    "glm4_moe": ("glm4_moe", dict(n_routed_experts=16, num_experts_per_tok=3, n_group=1, topk_group=1,
                                  norm_topk_prob=True, routed_scaling_factor=2.5)),
    "glm4_moe_group": ("glm4_moe", dict(n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=1,
                                        norm_topk_prob=True, routed_scaling_factor=1.0)),
    "gpt_oss": ("gpt_oss", dict(num_local_experts=16, num_experts_per_tok=4)),
}


def build(arch, keys):
    """The architecture's MoE block with random router tensors, and its router module."""
    if arch == "deepseek_v2":
        block = DeepseekV2Moe(DeepseekV2Config(**COMMON, kv_lora_rank=8, q_lora_rank=None, qk_nope_head_dim=8,
                                               qk_rope_head_dim=4, v_head_dim=8, n_shared_experts=1, **keys))
        return block, block.gate
    if arch == "deepseek_v3":
        block = DeepseekV3MoE(DeepseekV3Config(**COMMON, kv_lora_rank=8, q_lora_rank=None, qk_nope_head_dim=8,
                                               qk_rope_head_dim=4, v_head_dim=8, n_shared_experts=1, **keys))
        return block, block.gate
    if arch == "glm4_moe":
        block = Glm4MoeMoE(Glm4MoeConfig(**COMMON, n_shared_experts=1, **keys))
        return block, block.gate
    if arch == "gpt_oss":
        block = GptOssMLP(GptOssConfig(**{k: v for k, v in COMMON.items() if k != "moe_intermediate_size"},
                                       head_dim=8, **keys))
        return block, block.router
    raise ValueError(arch)


def fill(router, generator):
    """Seeded random router tensors: a gate that spreads the logits over a few units, a correction bias of the
    size of the sigmoid scores' differences (so that it changes some selections), a gate bias."""
    with torch.no_grad():
        router.weight.copy_(torch.randn(router.weight.shape, generator=generator) * 0.6)
        if hasattr(router, "e_score_correction_bias"):
            router.e_score_correction_bias.copy_(torch.randn(router.e_score_correction_bias.shape,
                                                             generator=generator) * 0.15)
        if hasattr(router, "bias"):
            router.bias.copy_(torch.randn(router.bias.shape, generator=generator) * 0.5)


def gap(values, k):
    """The gap between the k-th and (k+1)-th largest of each row (inf when k covers the row)."""
    if k >= values.shape[-1]:
        return torch.full(values.shape[:-1], float("inf"), dtype=torch.float64)
    top = values.double().topk(k + 1, dim=-1).values
    return top[..., k - 1] - top[..., k]


def decisions(arch, router, x, k):
    """For each token: the smallest ranking gap, whether group limits and the correction bias changed the
    selection of k experts. Recomputes the rankings of the router's forward in float64 from its own parameters."""
    logits = (x.double() @ router.weight.double().T)
    if arch == "gpt_oss":
        logits = logits + router.bias.double()
        return gap(logits, k), torch.zeros(len(x), dtype=torch.bool), torch.zeros(len(x), dtype=torch.bool)
    e = router.num_experts
    if arch == "deepseek_v2":
        scores = logits.softmax(-1)
        choice = scores
        groups = router.num_group if router.topk_method == "group_limited_greedy" else 1
        group_score = choice.view(len(x), groups, e // groups).max(-1).values
    else:
        scores = logits.sigmoid()
        choice = scores + router.e_score_correction_bias.double()
        groups = router.num_group
        group_score = choice.view(len(x), groups, e // groups).topk(2, -1).values.sum(-1)
    kept = router.topk_group if groups > 1 else 1

    def select(choice, group_score):
        mask = torch.zeros_like(group_score).scatter_(1, group_score.topk(kept, -1).indices, 1)
        mask = mask.unsqueeze(-1).expand(-1, groups, e // groups).reshape(len(x), e).bool()
        limited = choice.masked_fill(~mask, float("-inf"))
        return limited, limited.topk(k, -1).indices.sort(-1).values

    limited, chosen = select(choice, group_score)
    margins = torch.minimum(gap(group_score, kept), gap(limited, k))
    group_effect = (choice.topk(k, -1).indices.sort(-1).values != chosen).any(-1)
    bias_effect = torch.zeros(len(x), dtype=torch.bool)
    if arch != "deepseek_v2":
        # The whole selection again without the correction bias.
        plain_groups = scores.view(len(x), groups, e // groups).topk(2, -1).values.sum(-1)
        bias_effect = (select(scores, plain_groups)[1] != chosen).any(-1)
    scale = scores.abs().max(-1).values
    return margins / scale, group_effect, bias_effect


def by_id(experts, weights):
    """The selection ordered by expert id (torch.topk(sorted=False) leaves the order unspecified)."""
    order = experts.argsort(-1)
    return experts.gather(1, order).to(torch.int32).contiguous(), weights.gather(1, order).float().contiguous()


def make(name, arch, keys, seed):
    generator = torch.Generator().manual_seed(seed)
    block, router = build(arch, keys)
    block.eval()
    fill(router, generator)
    pool = torch.randn(8 * TOKENS, HIDDEN, generator=generator)
    k = router.top_k
    groups, kept = keys.get("n_group") or 1, keys.get("topk_group") or 1
    if keys.get("topk_method") == "greedy":
        groups = kept = 1
    # The top-k override: one more expert per token, when the kept groups hold it.
    override = k + 1 if k + 1 <= kept * router.num_experts // groups else None
    margins, group_effect, bias_effect = decisions(arch, router, pool, k)
    if override:
        margins = torch.minimum(margins, decisions(arch, router, pool, override)[0])
    clear = (margins > MIN_GAP).nonzero().flatten()
    if len(clear) < TOKENS:
        raise RuntimeError(f"{name}: only {len(clear)} decisive tokens")
    # Decisive tokens: up to half of them ones the group limit or the correction bias changes.
    effect = (group_effect | bias_effect)[clear]
    changed, unchanged = clear[effect][:TOKENS // 2], clear[~effect]
    order = torch.cat([changed, unchanged, clear[effect][TOKENS // 2:]])[:TOKENS].sort().values
    x = pool[order].contiguous()
    if arch in ("deepseek_v2", "deepseek_v3", "glm4_moe") and keys.get("n_group", 1) > 1 \
            and keys.get("topk_method") != "greedy":
        assert group_effect[order].any(), f"{name}: the group limit changes no selection"
    if arch in ("deepseek_v3", "glm4_moe"):
        assert bias_effect[order].any(), f"{name}: the correction bias changes no selection"

    with torch.no_grad():
        logits, weights, experts = router(x)
    if arch == "deepseek_v3":
        # GLM-4.5's router is the same code: it must give the same answer from the same tensors.
        glm = Glm4MoeMoE(Glm4MoeConfig(**COMMON, n_shared_experts=1, **keys)).gate
        glm.load_state_dict(router.state_dict())
        with torch.no_grad():
            g_logits, g_weights, g_experts = glm(x)
        assert torch.equal(g_experts, experts) and torch.equal(g_weights, weights), f"{name}: GLM-4.5 differs"
    reference = {"x": x, "logits": logits.float().contiguous()}
    reference["experts"], reference["weights"] = by_id(experts, weights)
    if override:
        router.top_k = override
        with torch.no_grad():
            _, o_weights, o_experts = router(x)
        router.top_k = k
        reference["override_experts"], reference["override_weights"] = by_id(o_experts, o_weights)

    directory = os.path.join(OUT, name)
    os.makedirs(directory, exist_ok=True)
    module = "router" if arch == "gpt_oss" else "gate"
    state = {PREFIX + f"{module}.{key}": value.detach().float().contiguous()
             for key, value in router.state_dict().items()}
    save_file(state, os.path.join(directory, "model.safetensors"))
    save_file(reference, os.path.join(directory, "reference.safetensors"))
    routing = {"kind": arch if arch != "glm4_moe" else "deepseek_v3", "architecture": arch,
               "gate": module, "hidden_size": HIDDEN}
    routing.update(keys)
    if override:
        routing["override_top_k"] = override
    if arch == "gpt_oss":
        routing["n_routed_experts"] = routing.pop("num_local_experts")
    with open(os.path.join(directory, "routing.json"), "w") as f:
        json.dump(routing, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{name:20s} tensors {sorted(state)}  min gap {margins[order].min().item():.4f}  "
          f"group-limited {int(group_effect[order].sum())}  bias-changed {int(bias_effect[order].sum())}")


def main():
    torch.manual_seed(0)
    for i, (name, (arch, keys)) in enumerate(CASES.items()):
        make(name, arch, keys, seed=1000 + i)
    return 0


if __name__ == "__main__":
    sys.exit(main())
