#!/usr/bin/env python3
"""Generate tiny random MoE checkpoints and Hugging Face reference outputs.

Each fixture is a directory ``<out>/<name>/`` holding a checkpoint written by
``transformers`` ``save_pretrained`` (``config.json``, ``generation_config.json``
and ``*.safetensors``, possibly sharded with ``model.safetensors.index.json``)
plus ``reference.safetensors`` with the outputs of the transformers
implementation, which the moert test-suite compares against:

    prompt       int32   [P]       fixed prompt (P = 7), no bos/eos/pad ids
    logits       float32 [P, V]    logits of one forward pass over the prompt
    greedy       int32   [G]       greedy continuation (G = 8), KV-cached,
                                   argmax (lowest index on ties), EOS ignored
    full_logits  float32 [P+G, V]  logits of one forward pass over
                                   prompt + greedy

Fixtures with a sliding window also hold a longer sequence, several windows
long, so that positions far past the window are checked:

    long_tokens  int32   [L]       prompt + greedy + fixed further ids
    long_logits  float32 [L, V]    logits of one forward pass over long_tokens

All references are computed in float32 with eager attention and the eager
(per-expert loop) experts implementation, from the weights *as stored on disk*
(bf16 / f16 checkpoints are reloaded and upcast exactly to float32).

The models are random but deterministic (fixed seeds).  After construction
every parameter is re-initialised with a much wider distribution than the
default 0.02 init so that routing decisions are decisive and logits are not
flat.  For each fixture the script tries consecutive seeds until

  * the gap between the k-th and (k+1)-th router probability is above
    ``MIN_ROUTER_GAP`` for every token of prompt + continuation at every MoE
    layer (for group-limited selection: the gaps of the group ranking and
    of the k-th expert among the kept groups, on the logits for DeepSeek-V2's
    group_limited_greedy, on sigmoid + e_score_correction_bias for
    DeepSeek-V3),
  * the top-1 / top-2 logit margin of every greedy step is above
    ``MIN_GREEDY_MARGIN``,
  * the greedy continuation is not degenerate (several distinct tokens),
  * fixture specific properties hold (e.g. ``clip_qkv`` actually clips).

Requires torch, transformers (5.x) and safetensors.  Run from anywhere:

    python3 tools/make_fixtures.py            # writes Tests/fixtures/
    python3 tools/make_fixtures.py --only olmoe --out /tmp/fx

DeepSeek fixtures (deepseek_*) also exercise multi-head latent attention,
YaRN and the DeepSeek routers; deepseek_v3* get multi-token-prediction
tensors appended after the references are computed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "fixtures"

PROMPT_LEN = 7
GREEDY_LEN = 8

# Initialisation widths (see module docstring).  The router std is set per
# fixture: with hidden size 64 the RMS-normalised router input has a norm of
# about 8, so a router std of 0.3 gives router logits with std ~2.4 -- peaked
# enough to be decisive, not so peaked that the k-th and (k+1)-th
# probabilities both vanish.
STD_EMBED = 1.0
STD_PROJ = 0.15
STD_BIAS = 0.1
NORM_SPREAD = 0.2  # RMSNorm weights ~ U(1 - s, 1 + s)
STD_SCORE_BIAS = 0.1  # DeepSeek-V3 e_score_correction_bias (sigmoid scores are in (0, 1))

# Acceptance thresholds used by the seed search.
MIN_ROUTER_GAP = 3e-3  # probability gap between k-th and (k+1)-th expert
MIN_ROUTER_LOGIT_GAP = 1e-2  # same gap measured on the router logits
MIN_GREEDY_MARGIN = 0.1  # logit gap between best and second best token
MIN_DISTINCT_GREEDY = 4
MAX_SEED_TRIES = 200

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Fixture:
    name: str
    arch: str  # transformers class name
    config_cls: str
    config: dict
    disk_dtype: str
    seed: int
    prompt: list[int]
    router_std: float
    embed_std: float = STD_EMBED
    max_shard_size: str | None = None
    legacy_config: bool = False  # see write_legacy_config()
    extra_checks: list[str] = field(default_factory=list)
    # DeepSeek-V3 multi-token-prediction layers appended to the checkpoint after the references are computed
    # (model.layers.<num_hidden_layers + i>.*, which moert skips by name).
    mtp_layers: int = 0
    # gpt-oss experts stored as the released checkpoints store them: MXFP4 blocks and e8m0 scales (see mxfp4_experts).
    mxfp4: bool = False
    long_len: int = 0  # length of long_tokens / long_logits; 0: none


COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    hidden_act="silu",
)

# gpt-oss (see the fixtures that use it).
GPT_OSS = dict(
    COMMON,
    num_hidden_layers=3,
    head_dim=16,
    intermediate_size=32,
    num_local_experts=4,
    num_experts_per_tok=2,
    sliding_window=4,
    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    attention_bias=True,
    swiglu_limit=1.5,
    rms_norm_eps=1e-5,
    rope_parameters={
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 4.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "truncate": False,
        "original_max_position_embeddings": 64,
    },
    tie_word_embeddings=False,
    bos_token_id=None,
    eos_token_id=254,
    pad_token_id=None,
)

FIXTURES = [
    Fixture(
        name="mixtral",
        arch="MixtralForCausalLM",
        config_cls="MixtralConfig",
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            sliding_window=4096,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        ),
        disk_dtype="float32",
        seed=1000,
        prompt=[17, 200, 45, 99, 3, 128, 250],
        router_std=0.3,
    ),
    Fixture(
        name="mixtral_bf16",
        arch="MixtralForCausalLM",
        config_cls="MixtralConfig",
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            sliding_window=4096,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        ),
        disk_dtype="bfloat16",
        seed=2000,
        prompt=[5, 77, 140, 33, 210, 61, 9],
        router_std=0.3,
    ),
    Fixture(
        name="mixtral_sharded",
        arch="MixtralForCausalLM",
        config_cls="MixtralConfig",
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            sliding_window=None,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        ),
        disk_dtype="float32",
        seed=3000,
        prompt=[100, 8, 255, 42, 42, 190, 11],
        router_std=0.3,
        max_shard_size="200KB",
    ),
    # Heads of 64 values (q8_0 KV cache blocks of 32 fit; the other fixtures' heads are 16 or 24), one key/value
    # head for both query heads.
    Fixture(
        name="mixtral_hd64",
        arch="MixtralForCausalLM",
        config_cls="MixtralConfig",
        config=dict(
            COMMON,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=64,
            num_hidden_layers=2,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            sliding_window=None,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        ),
        disk_dtype="float32",
        seed=7000,
        prompt=[64, 31, 7, 180, 222, 90, 14],
        router_std=0.3,
    ),
    Fixture(
        name="qwen2_moe",
        arch="Qwen2MoeForCausalLM",
        config_cls="Qwen2MoeConfig",
        config=dict(
            COMMON,
            num_hidden_layers=3,
            intermediate_size=64,  # dense MLP of the mlp_only layer
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            qkv_bias=True,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            use_sliding_window=False,
            tie_word_embeddings=False,
            bos_token_id=250,
            eos_token_id=251,
            pad_token_id=None,
        ),
        disk_dtype="float16",
        seed=4000,
        prompt=[12, 64, 7, 180, 33, 91, 230],
        router_std=0.3,
    ),
    Fixture(
        name="qwen3_moe",
        arch="Qwen3MoeForCausalLM",
        config_cls="Qwen3MoeConfig",
        config=dict(
            COMMON,
            num_hidden_layers=2,
            head_dim=24,
            intermediate_size=64,
            moe_intermediate_size=32,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            attention_bias=False,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 2000.0},
            use_sliding_window=False,
            tie_word_embeddings=True,
            bos_token_id=250,
            eos_token_id=251,
            pad_token_id=None,
        ),
        disk_dtype="float32",
        seed=5000,
        prompt=[3, 141, 59, 26, 153, 58, 97],
        router_std=0.3,
        # With tied embeddings a std-1 embedding dominates the final hidden
        # state and the model only ever repeats its last input token.
        embed_std=0.3,
        legacy_config=True,
        extra_checks=["rope_theta_matters"],
    ),
    # A sliding window (5) shorter than prompt + greedy (15): every layer attends to its last 5 positions.
    Fixture(
        name="mixtral_window",
        arch="MixtralForCausalLM",
        config_cls="MixtralConfig",
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=32,
            num_local_experts=4,
            num_experts_per_tok=2,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            sliding_window=5,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=None,
        ),
        disk_dtype="float32",
        seed=8000,
        prompt=[90, 14, 201, 7, 66, 133, 240],
        router_std=0.3,
        extra_checks=["window_matters"],
        long_len=40,
    ),
    # Sliding (window 4) and full layers named by layer_types, in an order the default pattern
    # (sliding on even layers below max_window_layers) would not give.
    Fixture(
        name="qwen2_moe_window",
        arch="Qwen2MoeForCausalLM",
        config_cls="Qwen2MoeConfig",
        config=dict(
            COMMON,
            num_hidden_layers=3,
            intermediate_size=64,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            qkv_bias=True,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            use_sliding_window=True,
            sliding_window=4,
            max_window_layers=3,
            layer_types=["full_attention", "sliding_attention", "sliding_attention"],
            tie_word_embeddings=False,
            bos_token_id=250,
            eos_token_id=251,
            pad_token_id=None,
        ),
        disk_dtype="float16",
        seed=9000,
        prompt=[21, 160, 5, 77, 212, 38, 119],
        router_std=0.3,
        extra_checks=["window_matters"],
        long_len=40,
    ),
    Fixture(
        name="olmoe",
        arch="OlmoeForCausalLM",
        config_cls="OlmoeConfig",
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=32,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            clip_qkv=2.0,
            attention_bias=False,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=254,
            pad_token_id=1,
        ),
        disk_dtype="float32",
        seed=6000,
        prompt=[44, 2, 170, 88, 123, 19, 240],
        router_std=0.3,
        extra_checks=["clip_qkv_clips"],
    ),
    # gpt-oss: attention sinks, sliding (window 4, shorter than the test sequence) and full layers alternating,
    # biases everywhere, YaRN rope, router with a bias and softmax over the selected logits, fused experts with
    # biases and the clamped SwiGLU (a limit low enough that the random activations reach it).
    Fixture(
        name="gpt_oss",
        arch="GptOssForCausalLM",
        config_cls="GptOssConfig",
        config=GPT_OSS,
        disk_dtype="float32",
        seed=8000,
        prompt=[44, 2, 170, 88, 123, 19, 240],
        router_std=0.3,
        extra_checks=["swiglu_clamps", "window_matters"],
    ),
    # The same architecture with its experts in MXFP4 blocks as the released gpt-oss checkpoints hold them; the
    # reference runs transformers on the weights its own convert_moe_packed_tensors decodes (expert width 64 = two
    # blocks of 32 per down_proj row).
    Fixture(
        name="gpt_oss_mxfp4",
        arch="GptOssForCausalLM",
        config_cls="GptOssConfig",
        config=dict(GPT_OSS, intermediate_size=64),
        disk_dtype="float32",
        seed=8500,
        prompt=[44, 2, 170, 88, 123, 19, 240],
        router_std=0.3,
        extra_checks=["swiglu_clamps", "window_matters"],
        mxfp4=True,
    ),
]

# DeepSeek (multi-head latent attention).  Heads of qk_nope 16 + qk_rope 8 for queries and keys, v_head_dim 16 for
# values; the latent KV cache holds kv_lora_rank + qk_rope_head_dim = 32 + 8 values per position and layer.
DEEPSEEK = dict(
    vocab_size=256,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=4,
    hidden_act="silu",
    kv_lora_rank=32,
    qk_nope_head_dim=16,
    qk_rope_head_dim=8,
    v_head_dim=16,
    intermediate_size=64,  # the dense layers before first_k_dense_replace
    moe_intermediate_size=32,
    n_routed_experts=8,
    num_experts_per_tok=2,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=None,
)

# YaRN with a short original context so that the correction ramp covers several of the 4 rotary frequencies, and
# mscale != mscale_all_dim so that both the cos/sin attention factor and the softmax scale differ from 1.
YARN = {
    "rope_type": "yarn",
    "rope_theta": 10000.0,
    "factor": 4.0,
    "original_max_position_embeddings": 16,
    "beta_fast": 4.0,
    "beta_slow": 1.0,
    "mscale": 1.0,
    "mscale_all_dim": 0.8,
}

FIXTURES += [
    Fixture(
        name="deepseek_v2",
        arch="DeepseekV2ForCausalLM",
        config_cls="DeepseekV2Config",
        config=dict(
            DEEPSEEK,
            num_hidden_layers=3,
            q_lora_rank=24,
            first_k_dense_replace=1,
            n_shared_experts=2,
            topk_method="greedy",
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            attention_bias=True,
            max_position_embeddings=64,
            rope_parameters=YARN,
        ),
        disk_dtype="float32",
        seed=8000,
        prompt=[21, 144, 67, 230, 8, 99, 181],
        router_std=0.3,
        extra_checks=["yarn_matters"],
    ),
    # DeepSeek-V2-Lite's layout: no query compression (q_proj), default RoPE; latent rows of 24 + 8 = 32 values,
    # so that a q8_0 cache (blocks of 32) can hold them.
    Fixture(
        name="deepseek_v2_lite",
        arch="DeepseekV2ForCausalLM",
        config_cls="DeepseekV2Config",
        config=dict(
            DEEPSEEK,
            kv_lora_rank=24,
            num_hidden_layers=3,
            q_lora_rank=None,
            first_k_dense_replace=1,
            n_shared_experts=1,
            topk_method="greedy",
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            attention_bias=False,
            max_position_embeddings=512,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        disk_dtype="float32",
        seed=9000,
        prompt=[40, 3, 199, 128, 77, 12, 250],
        router_std=0.3,
    ),
    # group_limited_greedy with routed_scaling_factor != 1 (needs the DeepSeek-V2 router).
    Fixture(
        name="deepseek_v2_group",
        arch="DeepseekV2ForCausalLM",
        config_cls="DeepseekV2Config",
        config=dict(
            DEEPSEEK,
            num_hidden_layers=2,
            q_lora_rank=24,
            first_k_dense_replace=0,
            n_shared_experts=1,
            topk_method="group_limited_greedy",
            n_group=4,
            topk_group=2,
            norm_topk_prob=False,
            routed_scaling_factor=1.5,
            attention_bias=False,
            max_position_embeddings=64,
            rope_parameters=YARN,
        ),
        disk_dtype="float32",
        seed=10000,
        prompt=[90, 17, 240, 33, 165, 7, 54],
        router_std=0.3,
    ),
    # Every layer dense, so that DeepSeek-V3's attention (interleaved rope, YaRN) is tested without its router;
    # with multi-token-prediction tensors appended.
    Fixture(
        name="deepseek_v3_dense",
        arch="DeepseekV3ForCausalLM",
        config_cls="DeepseekV3Config",
        config=dict(
            DEEPSEEK,
            num_hidden_layers=2,
            q_lora_rank=24,
            first_k_dense_replace=2,
            n_shared_experts=1,
            n_group=2,
            topk_group=1,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            rope_interleave=True,
            attention_bias=False,
            max_position_embeddings=64,
            rope_parameters=YARN,
            num_mtp_layers=1,
        ),
        disk_dtype="float32",
        seed=11000,
        prompt=[66, 201, 5, 148, 93, 30, 222],
        router_std=0.3,
        mtp_layers=1,
        extra_checks=["yarn_matters"],
    ),
    # DeepSeek-V3 routing: sigmoid scores, e_score_correction_bias, n_group > 1 (needs the DeepSeek-V3 router);
    # rope_interleave false; multi-token-prediction tensors appended.
    Fixture(
        name="deepseek_v3",
        arch="DeepseekV3ForCausalLM",
        config_cls="DeepseekV3Config",
        config=dict(
            DEEPSEEK,
            num_hidden_layers=3,
            q_lora_rank=24,
            first_k_dense_replace=1,
            n_shared_experts=1,
            n_group=4,
            topk_group=2,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            rope_interleave=False,
            attention_bias=False,
            max_position_embeddings=64,
            rope_parameters=YARN,
            num_mtp_layers=1,
        ),
        disk_dtype="float32",
        seed=12000,
        prompt=[150, 2, 88, 190, 41, 117, 9],
        router_std=0.6,
        mtp_layers=1,
    ),
    # GLM-4.5 MoE: DeepSeek-V3's routing (sigmoid, e_score_correction_bias, n_group 2) with grouped-query attention,
    # biases on q/k/v, per-head q/k norms, partial rotary (half of each head), a dense first layer, a shared expert
    # and a multi-token-prediction layer appended.
    Fixture(
        name="glm4_moe",
        arch="Glm4MoeForCausalLM",
        config_cls="Glm4MoeConfig",
        config=dict(
            COMMON,
            num_hidden_layers=3,
            head_dim=16,
            partial_rotary_factor=0.5,
            use_qk_norm=True,
            attention_bias=True,
            intermediate_size=64,
            moe_intermediate_size=32,
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=2,
            topk_group=1,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            num_mtp_layers=1,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=254,
            pad_token_id=None,
        ),
        disk_dtype="float32",
        seed=13000,
        prompt=[71, 150, 9, 222, 38, 104, 187],
        router_std=0.6,
        mtp_layers=1,
    ),
]


# --------------------------------------------------------------------------
# model construction


def build_model(fx: Fixture, seed: int) -> torch.nn.Module:
    import transformers as tf
    config = getattr(tf, fx.config_cls)(**json.loads(json.dumps(fx.config)))
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(tf, fx.arch)(config)
    reinit(model, seed, fx.router_std, fx.embed_std)
    model.to(torch.float32)
    model.eval()
    # Round to the on-disk precision so that the float32 model computes
    # exactly what a runtime computes from the saved (upcast) weights.
    dtype = DTYPES[fx.disk_dtype]
    if dtype != torch.float32:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).to(torch.float32))
    if fx.mxfp4:
        model.mxfp4_tensors = mxfp4_experts(model)
    return model


# e2m1 values of the 16 codes (transformers' integrations/mxfp4.py FP4_VALUES): codes 8-15 are the negatives.
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def mxfp4_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks of 32 values along the last axis of w [..., rows, cols] as MXFP4: a shared e8m0 scale 2^(s - 127)
    with s chosen so that the block's largest magnitude lands in [4, 8) (OCP MX: floor(log2(amax)) - 2, e2m1's
    largest exponent), each value rounded to the nearest e2m1 (6 at most), two codes per byte, low nibble first.
    Returns blocks [..., rows, cols / 32, 16] and scales [..., rows, cols / 32], both uint8."""
    *lead, cols = w.shape
    v = w.reshape(*lead, cols // 32, 32).double()
    amax = v.abs().amax(dim=-1, keepdim=True)
    exp = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-300))) - 2, torch.zeros_like(amax))
    scaled = v / torch.pow(2.0, exp)
    grid = torch.tensor(E2M1, dtype=torch.float64)
    codes = (scaled.abs().unsqueeze(-1) - grid).abs().argmin(dim=-1)  # nearest magnitude, lower on ties
    codes = codes + 8 * (scaled < 0)
    codes = codes.to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    scales = (exp.squeeze(-1) + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


@torch.no_grad()
def mxfp4_experts(model) -> dict[str, torch.Tensor]:
    """Rounds every gpt-oss expert matrix to MXFP4 in place, as transformers' own `convert_moe_packed_tensors`
    decodes the blocks (so that the float32 model computes what a runtime computes from the stored blocks), and
    returns the blocks and scales by checkpoint name: `gate_up_proj_blocks` [E, 2I, H/32, 16] (rows = the output
    features, gate and up interleaved as in gate_up_proj's last axis) and `down_proj_blocks` [E, H, I/32, 16]."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    out = {}
    for l, layer in enumerate(model.model.layers):
        experts = layer.mlp.experts
        for proj in ("gate_up_proj", "down_proj"):
            param = getattr(experts, proj)  # [E, in, out], applied as x @ W
            blocks, scales = mxfp4_quantize(param.transpose(1, 2))
            decoded = convert_moe_packed_tensors(blocks.clone(), scales.clone(), dtype=torch.float32)
            if decoded.shape != param.shape:
                raise RuntimeError(f"MXFP4 of {proj}: decoded shape {tuple(decoded.shape)}, expected {tuple(param.shape)}")
            param.copy_(decoded)
            name = f"model.layers.{l}.mlp.experts.{proj}"
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
    return out


def write_mxfp4(model, path: Path) -> None:
    """Replaces the fused expert matrices of the saved checkpoint by their MXFP4 blocks and scales, and names the
    format in config.json as the released gpt-oss checkpoints do."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    file = path / "model.safetensors"
    with safe_open(str(file), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.endswith(("experts.gate_up_proj", "experts.down_proj"))}
        metadata = f.metadata()
    tensors.update(model.mxfp4_tensors)
    save_file(dict(sorted(tensors.items())), str(file), metadata=metadata)
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
    }
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def reinit(model: torch.nn.Module, seed: int, router_std: float, embed_std: float) -> None:
    """Re-initialise every parameter with wide, deterministic distributions."""
    gen = torch.Generator().manual_seed(seed)

    def normal(p, std, mean=0.0):
        p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean)

    with torch.no_grad():
        for name, p in model.named_parameters():  # tied weights appear once
            if name.endswith("embed_tokens.weight"):
                normal(p, embed_std)
            elif name.endswith(".bias") or name.endswith("_bias"):
                normal(p, STD_BIAS)
            elif name.endswith("self_attn.sinks"):  # gpt-oss: a logit per head, comparable to the scores
                normal(p, 1.0)
            elif "norm" in name.rsplit(".", 2)[-2] and p.ndim == 1:
                u = torch.rand(p.shape, generator=gen, dtype=torch.float32)
                p.copy_(1.0 + NORM_SPREAD * (2.0 * u - 1.0))
            elif name.endswith("mlp.gate.weight") or name.endswith("mlp.router.weight"):  # router
                normal(p, router_std)
            elif p.ndim in (2, 3):  # linear projections, fused experts, shared_expert_gate
                normal(p, STD_PROJ)
            else:
                raise RuntimeError(f"no init rule for parameter {name} {tuple(p.shape)}")
        for name, b in model.named_buffers():
            # DeepSeek-V3's selection-only expert bias: wide enough to change which experts win.
            if name.endswith("e_score_correction_bias"):
                normal(b, STD_SCORE_BIAS)


def load_model(fx: Fixture, path: Path) -> torch.nn.Module:
    import transformers as tf
    extra = {"quantization_config": tf.Mxfp4Config(dequantize=True)} if fx.mxfp4 else {}
    model, info = getattr(tf, fx.arch).from_pretrained(
        path,
        **extra,
        dtype=torch.float32,
        attn_implementation="eager",
        experts_implementation="eager",
        output_loading_info=True,
    )
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise RuntimeError(f"{fx.name}: loading reported {problems}")
    model.eval()
    return model


# --------------------------------------------------------------------------
# reference computation


@torch.no_grad()
def forward_logits(model, ids: torch.Tensor, **kw):
    out = model(input_ids=ids[None], use_cache=False, **kw)
    return out


@torch.no_grad()
def greedy_decode(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """KV-cached greedy loop; EOS is ignored, no logits processors."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    out = model(input_ids=prompt[None], cache=cache, use_cache=True)
    tokens = []
    for _ in range(steps):
        nxt = int(torch.argmax(out.logits[0, -1]))  # first index on ties
        tokens.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]]), cache=out.cache, use_cache=True)
    return tokens


def moe_layers(model) -> list[int]:
    return [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "experts")]


def dense_layers(model) -> list[int]:
    return [i for i, layer in enumerate(model.model.layers) if not hasattr(layer.mlp, "experts")]


def routing_method(config) -> str:
    """How the fixture's router selects experts: softmax_greedy, group_limited_greedy or noaux_tc."""
    if config.model_type in ("deepseek_v3", "glm4_moe"):
        return "noaux_tc"
    if config.model_type == "deepseek_v2" and config.topk_method == "group_limited_greedy":
        return "group_limited_greedy"
    return "softmax_greedy"


def grouped_selection_gap(config, gate, logits: torch.Tensor, method: str) -> float:
    """The smallest margin of a group-limited selection (DeepseekV2TopkRouter / DeepseekV3TopkRouter.forward):
    between the topk_group-th and the next group score, and between the k-th and the next expert score among the
    kept groups, over every token."""
    k, groups, kept = config.num_experts_per_tok, config.n_group, config.topk_group
    if method == "noaux_tc":
        scores = logits.sigmoid() + gate.e_score_correction_bias.float()
        group_scores = scores.view(-1, groups, scores.shape[-1] // groups).topk(2, dim=-1)[0].sum(dim=-1)
    else:
        scores = logits  # the softmax keeps the order of the logits
        group_scores = scores.view(-1, groups, scores.shape[-1] // groups).max(dim=-1).values
    gs = group_scores.sort(dim=-1, descending=True)
    gaps = [float((gs.values[:, kept - 1] - gs.values[:, kept]).min())]
    mask = torch.zeros_like(group_scores).scatter_(1, gs.indices[:, :kept], 1.0)
    mask = mask.repeat_interleave(scores.shape[-1] // groups, dim=-1).bool()
    masked = scores.masked_fill(~mask, float("-inf")).sort(dim=-1, descending=True).values
    gaps.append(float((masked[:, k - 1] - masked[:, k]).min()))
    return min(gaps)


@torch.no_grad()
def analyse(fx: Fixture, model) -> dict:
    prompt = torch.tensor(fx.prompt, dtype=torch.long)
    logits = forward_logits(model, prompt).logits[0].float()
    greedy = greedy_decode(model, prompt, GREEDY_LEN)
    full_ids = torch.cat([prompt, torch.tensor(greedy, dtype=torch.long)])
    full = forward_logits(model, full_ids, output_router_logits=True)
    full_logits = full.logits[0].float()

    k = model.config.num_experts_per_tok
    prob_gaps, logit_gaps = [], []
    layers = moe_layers(model)
    for layer, rl in zip(layers, full.router_logits or []):
        method = routing_method(model.config)
        if method == "softmax_greedy":
            probs = torch.softmax(rl.float(), dim=-1)
            sp = probs.sort(dim=-1, descending=True).values
            sl = rl.float().sort(dim=-1, descending=True).values
            prob_gaps.append(float((sp[:, k - 1] - sp[:, k]).min()))
            logit_gaps.append(float((sl[:, k - 1] - sl[:, k]).min()))
        else:
            # group_limited_greedy ranks softmax probabilities, a monotone function of the logits: its gaps are
            # measured on the logits (MIN_ROUTER_LOGIT_GAP). noaux_tc ranks sigmoid scores plus a bias: its gaps
            # are measured on those scores (MIN_ROUTER_GAP).
            gap = grouped_selection_gap(model.config, model.model.layers[layer].mlp.gate, rl.float(), method)
            prob_gaps.append(gap if method == "noaux_tc" else float("inf"))
            logit_gaps.append(gap if method != "noaux_tc" else float("inf"))
    assert len(prob_gaps) == len(layers)
    if not layers:
        prob_gaps, logit_gaps = [float("inf")], [float("inf")]

    rows = full_logits[PROMPT_LEN - 1 : PROMPT_LEN + GREEDY_LEN - 1]
    top2 = rows.topk(2, dim=-1).values
    greedy_margin = float((top2[:, 0] - top2[:, 1]).min())

    return dict(
        prompt=prompt,
        logits=logits,
        greedy=greedy,
        full_logits=full_logits,
        prob_gaps=prob_gaps,
        logit_gaps=logit_gaps,
        greedy_margin=greedy_margin,
    )


def consistency_errors(res: dict) -> list[str]:
    """Checks that must hold for every reference (not seed dependent)."""
    errs = []
    logits, full = res["logits"], res["full_logits"]
    scale = float(logits.abs().max())
    diff = float((full[:PROMPT_LEN] - logits).abs().max())
    if diff > 1e-5 * scale:
        errs.append(f"full_logits[:P] differs from logits by {diff:.3g} (max |logit| {scale:.3g})")
    am = full[PROMPT_LEN - 1 : PROMPT_LEN + GREEDY_LEN - 1].argmax(dim=-1).tolist()
    if am != res["greedy"]:
        errs.append(f"argmax(full_logits) {am} != greedy {res['greedy']}")
    return errs


def quality_errors(res: dict) -> list[str]:
    """Seed dependent requirements; a failure makes the search try the next seed."""
    errs = []
    if min(res["prob_gaps"]) <= MIN_ROUTER_GAP:
        errs.append(f"router gap {min(res['prob_gaps']):.3g}")
    if min(res["logit_gaps"]) <= MIN_ROUTER_LOGIT_GAP:
        errs.append(f"router logit gap {min(res['logit_gaps']):.3g}")
    if res["greedy_margin"] <= MIN_GREEDY_MARGIN:
        errs.append(f"greedy margin {res['greedy_margin']:.3g}")
    if len(set(res["greedy"])) < MIN_DISTINCT_GREEDY:
        errs.append(f"degenerate greedy {res['greedy']}")
    return errs


# --------------------------------------------------------------------------
# fixture specific checks


@torch.no_grad()
def clip_fractions(model, prompt: list[int]) -> dict:
    """Fraction of q/k/v entries that OLMoE's clip_qkv clamps (per tensor kind)."""
    clip = model.config.clip_qkv
    counts = {"q": [0, 0], "k": [0, 0], "v": [0, 0]}
    hooks = []

    def make(kind):
        def hook(_mod, _inp, out):
            counts[kind][0] += int((out.abs() > clip).sum())
            counts[kind][1] += out.numel()

        return hook

    for layer in model.model.layers:
        attn = layer.self_attn
        # q/k are clipped after q_norm/k_norm, v right after v_proj; forward
        # hooks observe the tensors before the in-place clamp.
        hooks.append(attn.q_norm.register_forward_hook(make("q")))
        hooks.append(attn.k_norm.register_forward_hook(make("k")))
        hooks.append(attn.v_proj.register_forward_hook(make("v")))
    try:
        forward_logits(model, torch.tensor(prompt, dtype=torch.long))
    finally:
        for h in hooks:
            h.remove()
    return {k: c / n for k, (c, n) in counts.items()}


@torch.no_grad()
def rope_theta_effect(fx: Fixture, model, res: dict) -> dict:
    """Relative logit change when the model is run with other rope thetas."""
    import transformers as tf
    out = {}
    base = dict(fx.config)
    for theta in (10000.0, 1000000.0):
        cfg = dict(base, rope_parameters={"rope_type": "default", "rope_theta": theta})
        config = getattr(tf, fx.config_cls)(**cfg)
        config._attn_implementation = "eager"
        config._experts_implementation = "eager"
        other = getattr(tf, fx.arch)(config)
        other.load_state_dict(model.state_dict())
        other.eval()
        lg = forward_logits(other, res["prompt"]).logits[0].float()
        out[theta] = float((lg - res["logits"]).abs().max() / res["logits"].abs().max())
    return out


def long_tokens(fx: Fixture, res: dict) -> torch.Tensor:
    """prompt + greedy, then fixed ids (a linear congruence) that avoid the special ids, to long_len."""
    special = {fx.config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    ids = list(fx.prompt) + list(res["greedy"])
    x = 7
    while len(ids) < fx.long_len:
        x = (x * 73 + 41) % fx.config["vocab_size"]
        if x not in special:
            ids.append(x)
    return torch.tensor(ids, dtype=torch.long)


def without_window(fx: Fixture) -> dict:
    """The fixture's config with no layer attending within a window."""
    if fx.arch == "GptOssForCausalLM":
        # GptOssConfig makes the even layers sliding_attention whatever layer_types says: a window longer than any
        # test sequence.
        return dict(fx.config, sliding_window=4096)
    cfg = dict(fx.config, sliding_window=None)
    cfg.pop("layer_types", None)
    if "use_sliding_window" in cfg:
        cfg["use_sliding_window"] = False
    return cfg


@torch.no_grad()
def clamp_fractions(model, prompt: list[int]) -> dict:
    """Fraction of gpt-oss expert gate/up activations beyond swiglu_limit (what the clamp changes)."""
    limit = model.config.swiglu_limit
    counts = {"gate": [0, 0], "up": [0, 0]}
    originals = []

    def wrap(experts):
        original = experts._apply_gate

        def apply_gate(gate_up):
            gate, up = gate_up[..., ::2], gate_up[..., 1::2]
            counts["gate"][0] += int((gate > limit).sum())
            counts["gate"][1] += gate.numel()
            counts["up"][0] += int((up.abs() > limit).sum())
            counts["up"][1] += up.numel()
            return original(gate_up)

        experts._apply_gate = apply_gate
        originals.append((experts, original))

    for layer in model.model.layers:
        wrap(layer.mlp.experts)
    try:
        forward_logits(model, torch.tensor(prompt, dtype=torch.long))
    finally:
        for experts, original in originals:
            experts._apply_gate = original
    return {k: c / n for k, (c, n) in counts.items()}


@torch.no_grad()
def variant_effect(fx: Fixture, model, res: dict, cfg: dict) -> float:
    """Relative change of the logits over prompt + continuation when the model runs with config `cfg`."""
    import transformers as tf
    config = getattr(tf, fx.config_cls)(**cfg)
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    other = getattr(tf, fx.arch)(config)
    other.load_state_dict(model.state_dict())
    other.eval()
    ids = torch.cat([res["prompt"], torch.tensor(res["greedy"], dtype=torch.long)])
    lg = forward_logits(other, ids).logits[0].float()
    return float((lg - res["full_logits"]).abs().max() / res["full_logits"].abs().max())


def extra_errors(fx: Fixture, model, res: dict, info: dict) -> list[str]:
    errs = []
    if "window_matters" in fx.extra_checks:
        eff = variant_effect(fx, model, res, without_window(fx))
        info["window_effect"] = eff
        if eff < 1e-2:
            errs.append(f"the sliding window changes logits only by {eff:.3g} (relative)")
    if "swiglu_clamps" in fx.extra_checks:
        fr = clamp_fractions(model, fx.prompt)
        info["clamp_fractions"] = fr
        for kind, f in fr.items():
            if f <= 0.0:
                errs.append(f"swiglu_limit clamps no {kind} activation")
    if "yarn_matters" in fx.extra_checks:
        default_rope = {"rope_type": "default", "rope_theta": fx.config["rope_parameters"]["rope_theta"]}
        eff = variant_effect(fx, model, res, dict(fx.config, rope_parameters=default_rope))
        info["yarn_effect"] = eff
        if eff < 1e-2:
            errs.append(f"YaRN changes logits only by {eff:.3g} (relative)")
    if "clip_qkv_clips" in fx.extra_checks:
        fr = clip_fractions(model, fx.prompt)
        info["clip_fractions"] = fr
        for kind, f in fr.items():
            if f <= 0.0:
                errs.append(f"clip_qkv does not clip any {kind} entry")
    if "rope_theta_matters" in fx.extra_checks:
        eff = rope_theta_effect(fx, model, res)
        info["rope_theta_effect"] = eff
        for theta, rel in eff.items():
            if rel < 1e-2:
                errs.append(f"rope_theta {theta} changes logits only by {rel:.3g} (relative)")
    return errs


# --------------------------------------------------------------------------
# saving


@torch.no_grad()
def long_cache_errors(model, res: dict) -> list[str]:
    """long_logits against transformers' KV-cached evaluation of the same tokens, prompt first, then one at a time."""
    from transformers import DynamicCache

    ids, want = res["long_tokens"], res["long_logits"]
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids[None, :PROMPT_LEN], cache=cache, use_cache=True)
    rows = [out.logits[0]]
    for t in range(PROMPT_LEN, len(ids)):
        out = model(input_ids=ids[None, t : t + 1], cache=out.cache, use_cache=True)
        rows.append(out.logits[0])
    got = torch.cat(rows).float()
    d = float((got - want).abs().max() / want.abs().max())
    return [f"cached long_logits differ from one pass by {d:.3g} (relative)"] if d > 1e-5 else []


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_legacy_config(path: Path) -> None:
    """Rewrite config.json the way older / hub checkpoints spell it.

    * the rope theta becomes a top-level ``"rope_theta"`` key instead of
      ``"rope_parameters": {"rope_type": "default", "rope_theta": ...}``;
    * ``"num_local_experts"`` (what Qwen3MoeConfig serialises because of its
      attribute_map) becomes ``"num_experts"``, as in the published Qwen3-MoE
      checkpoints.
    """
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = cfg.pop("rope_parameters")
    if set(rope) - {"rope_type", "rope_theta"} or rope.get("rope_type", "default") != "default":
        raise RuntimeError(f"unexpected rope_parameters {rope}")
    cfg["rope_theta"] = rope["rope_theta"]
    if "num_local_experts" in cfg:
        cfg["num_experts"] = cfg.pop("num_local_experts")
    cfg = dict(sorted(cfg.items()))
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def save_reference(path: Path, res: dict) -> None:
    from safetensors.torch import save_file

    tensors = {
        "prompt": res["prompt"].to(torch.int32).contiguous(),
        "logits": res["logits"].to(torch.float32).contiguous(),
        "greedy": torch.tensor(res["greedy"], dtype=torch.int32),
        "full_logits": res["full_logits"].to(torch.float32).contiguous(),
    }
    if "long_tokens" in res:
        tensors["long_tokens"] = res["long_tokens"].to(torch.int32).contiguous()
        tensors["long_logits"] = res["long_logits"].to(torch.float32).contiguous()
    # A single metadata key keeps the file byte-for-byte reproducible.
    save_file(tensors, str(path / "reference.safetensors"), metadata={"format": "pt"})


def verify_saved(fx: Fixture, path: Path) -> None:
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("architectures") != [fx.arch]:
        raise RuntimeError(f"{fx.name}: architectures is {cfg.get('architectures')}")
    shards = sorted(p.name for p in path.glob("model*.safetensors"))
    if fx.max_shard_size:
        n = len(shards)
        if not (2 <= n <= 3) or not (path / "model.safetensors.index.json").exists():
            raise RuntimeError(f"{fx.name}: expected 2-3 shards + index, got {shards}")
        expect = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
        if shards != expect:
            raise RuntimeError(f"{fx.name}: unexpected shard names {shards}")
    elif shards != ["model.safetensors"]:
        raise RuntimeError(f"{fx.name}: unexpected weight files {shards}")
    from safetensors import safe_open

    want = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[fx.disk_dtype]
    for s in shards:
        with safe_open(str(path / s), "pt") as f:
            for key in f.keys():
                got = f.get_slice(key).get_dtype()
                if fx.mxfp4 and key.endswith(("_blocks", "_scales")):
                    continue  # uint8 MXFP4 data
                if got != want:
                    raise RuntimeError(f"{fx.name}: {s}:{key} stored as {got}, expected {want}")


def append_mtp_tensors(fx: Fixture, path: Path) -> None:
    """Append DeepSeek-V3 (or GLM-4.5) multi-token-prediction layers as the published checkpoints hold them
    (model.layers.<num_hidden_layers + i>.{enorm, hnorm, eh_proj, shared_head, a decoder layer}); transformers
    does not run them (DeepseekV3PreTrainedModel._keys_to_ignore_on_load_unexpected), nor does moert."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    file = path / "model.safetensors"
    with safe_open(str(file), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    cfg = fx.config
    h, gen = cfg["hidden_size"], torch.Generator().manual_seed(fx.seed)
    for i in range(fx.mtp_layers):
        p = f"model.layers.{cfg['num_hidden_layers'] + i}."
        shapes = {
            "enorm.weight": [h], "hnorm.weight": [h], "eh_proj.weight": [h, 2 * h],
            "shared_head.norm.weight": [h], "shared_head.head.weight": [cfg["vocab_size"], h],
            "input_layernorm.weight": [h],
            **({"self_attn.kv_a_proj_with_mqa.weight": [cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"], h]}
               if "kv_lora_rank" in cfg else {"self_attn.q_proj.weight": [cfg["num_attention_heads"] * cfg["head_dim"], h]}),
            "mlp.gate.weight": [cfg["n_routed_experts"], h],
            "mlp.experts.0.gate_proj.weight": [cfg["moe_intermediate_size"], h],
        }
        for name, shape in shapes.items():
            tensors[p + name] = torch.randn(shape, generator=gen, dtype=torch.float32)
    save_file(tensors, str(file), metadata=metadata)


def check_prompt(fx: Fixture) -> None:
    special = set()
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = fx.config.get(key)
        special.update(v if isinstance(v, list) else [v] if v is not None else [])
    if len(fx.prompt) != PROMPT_LEN or special & set(fx.prompt):
        raise RuntimeError(f"{fx.name}: prompt must have {PROMPT_LEN} ids and avoid {sorted(special)}")
    if not all(0 <= t < fx.config["vocab_size"] for t in fx.prompt):
        raise RuntimeError(f"{fx.name}: prompt id out of range")


def make_fixture(fx: Fixture, out_dir: Path, verbose: bool) -> dict:
    info: dict = {}
    check_prompt(fx)
    for attempt in range(MAX_SEED_TRIES):
        seed = fx.seed + attempt
        model = build_model(fx, seed)
        res = analyse(fx, model)
        errs = consistency_errors(res)
        if errs:
            raise RuntimeError(f"{fx.name} seed {seed}: " + "; ".join(errs))
        errs = quality_errors(res) + extra_errors(fx, model, res, info)
        if verbose:
            print(f"  {fx.name} seed {seed}: {'ok' if not errs else '; '.join(errs)}")
        if not errs:
            break
    else:
        raise RuntimeError(f"{fx.name}: no acceptable seed in {MAX_SEED_TRIES} tries")

    path = out_dir / fx.name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    to_save = model.to(DTYPES[fx.disk_dtype])
    kwargs = {"max_shard_size": fx.max_shard_size} if fx.max_shard_size else {}
    to_save.save_pretrained(path, **kwargs)
    if fx.legacy_config:
        write_legacy_config(path)
    if fx.mxfp4:
        write_mxfp4(model, path)
    verify_saved(fx, path)

    # Recompute everything from the checkpoint as written (upcast to float32).
    loaded = load_model(fx, path)
    if fx.legacy_config:
        want = (fx.config["rope_parameters"]["rope_theta"], fx.config["num_experts"])
        got = (loaded.config.rope_parameters["rope_theta"], loaded.config.num_experts)
        if got != want:
            raise RuntimeError(f"{fx.name}: reloaded (rope_theta, num_experts) {got}, expected {want}")
    final = analyse(fx, loaded)
    errs = consistency_errors(final) + quality_errors(final) + extra_errors(fx, loaded, final, info)
    ref_model = model.to(torch.float32)
    for name, p in ref_model.state_dict().items():
        q = loaded.state_dict()[name]
        if not torch.equal(p, q):
            errs.append(f"reloaded parameter {name} differs")
    if not torch.equal(final["full_logits"], res["full_logits"]) or final["greedy"] != res["greedy"]:
        d = float((final["full_logits"] - res["full_logits"]).abs().max())
        errs.append(f"reloaded model output differs from in-memory model (max diff {d:.3g})")
    if fx.long_len:
        final["long_tokens"] = long_tokens(fx, final)
        final["long_logits"] = forward_logits(loaded, final["long_tokens"]).logits[0].float()
        # transformers' own cached decode (its sliding-window cache layers) must agree with the one-pass logits.
        errs += long_cache_errors(loaded, final)
    if errs:
        raise RuntimeError(f"{fx.name}: " + "; ".join(errs))
    save_reference(path, final)
    if fx.mtp_layers:
        append_mtp_tensors(fx, path)

    info.update(
        name=fx.name,
        arch=fx.arch,
        dtype=fx.disk_dtype,
        seed=seed,
        size=dir_size(path),
        min_prob_gap=min(final["prob_gaps"]),
        prob_gaps=final["prob_gaps"],
        min_logit_gap=min(final["logit_gaps"]),
        greedy_margin=final["greedy_margin"],
        greedy=final["greedy"],
        prompt=fx.prompt,
        moe_layers=moe_layers(loaded),
        dense_layers=dense_layers(loaded),
        max_abs_logit=float(final["full_logits"].abs().max()),
        files=sorted(p.name for p in path.iterdir()),
    )
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Fixtures: " + ", ".join(f.name for f in FIXTURES),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)} in the repository root)",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only (re)generate these fixtures")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every seed that is tried")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    selected = FIXTURES
    if args.only:
        unknown = set(args.only) - {f.name for f in FIXTURES}
        if unknown:
            parser.error(f"unknown fixture(s): {', '.join(sorted(unknown))}")
        selected = [f for f in FIXTURES if f.name in args.only]

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    infos = []
    for fx in selected:
        print(f"building {fx.name} ...", flush=True)
        infos.append(make_fixture(fx, out_dir, args.verbose))

    print()
    header = f"{'name':<16} {'architecture':<20} {'dtype':<9} {'bytes':>9} {'seed':>5} {'min gap':>9} {'greedy margin':>13}"
    print(header)
    print("-" * len(header))
    for i in infos:
        print(
            f"{i['name']:<16} {i['arch']:<20} {i['dtype']:<9} {i['size']:>9} {i['seed']:>5} "
            f"{i['min_prob_gap']:>9.4f} {i['greedy_margin']:>13.4f}"
        )
    total = dir_size(out_dir)
    print(f"\ntotal size of {out_dir}: {total} bytes")
    for i in infos:
        extra = ""
        if "clip_fractions" in i:
            extra += " clipped=" + ", ".join(f"{k}:{v:.3f}" for k, v in i["clip_fractions"].items())
        if "clamp_fractions" in i:
            extra += " clamped=" + ", ".join(f"{k}:{v:.3f}" for k, v in i["clamp_fractions"].items())
        if "window_effect" in i:
            extra += f" window_effect={i['window_effect']:.3g}"
        if "yarn_effect" in i:
            extra += f" yarn_effect={i['yarn_effect']:.3g}"
        if "rope_theta_effect" in i:
            extra += " theta_effect=" + ", ".join(f"{k:g}:{v:.3g}" for k, v in i["rope_theta_effect"].items())
        print(
            f"{i['name']}: prompt={i['prompt']} greedy={i['greedy']} moe_layers={i['moe_layers']} "
            f"dense_layers={i['dense_layers']} router_prob_gaps={[round(g, 4) for g in i['prob_gaps']]} "
            f"min_router_logit_gap={i['min_logit_gap']:.4f} max|logit|={i['max_abs_logit']:.3f}{extra}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
