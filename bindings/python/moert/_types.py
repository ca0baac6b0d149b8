"""ctypes mirrors of the constants, structs and callback types of moert.h (same names, same layout).

The host-side constants of moert_plugin.h used by this binding are here too.
"""

from __future__ import annotations

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_float,
    c_int32,
    c_int64,
    c_uint32,
    c_uint64,
    c_void_p,
)

__all__ = [
    "MOERT_ABI_VERSION",
    "MOERT_VERSION",
    "MOERT_VERSION_NUMBER",
    "MOERT_DTYPE_F32",
    "MOERT_DTYPE_F16",
    "MOERT_DTYPE_BF16",
    "MOERT_DTYPE_MIXED",
    "MOERT_LOGITS_NONE",
    "MOERT_LOGITS_LAST",
    "MOERT_LOGITS_ALL",
    "moert_status",
    "moert_model_p",
    "moert_session_p",
    "moert_sampler_p",
    "moert_model_options",
    "moert_model_info",
    "moert_session_options",
    "moert_sampler_options",
    "moert_generate_options",
    "moert_token_callback",
    "moert_trace",
    "MOERT_KIND_ROUTER",
    "MOERT_KIND_EXPERT",
]

# Versions of the header this binding mirrors.
MOERT_VERSION = "0.1.0"
MOERT_VERSION_NUMBER = 1000
MOERT_ABI_VERSION = 1

# moert_model_info.dtype
MOERT_DTYPE_F32 = 0
MOERT_DTYPE_F16 = 1
MOERT_DTYPE_BF16 = 2
MOERT_DTYPE_MIXED = 3

# moert_kind_count() / moert_kind_name() kinds (moert_plugin.h)
MOERT_KIND_ROUTER = 0
MOERT_KIND_EXPERT = 1

# moert_session_eval() logits_mode
MOERT_LOGITS_NONE = 0
MOERT_LOGITS_LAST = 1
MOERT_LOGITS_ALL = 2

#: ``typedef int32_t moert_status``
moert_status = c_int32

# Opaque handles travel as void pointers; the Python objects keep them as ints.
moert_model_p = c_void_p
moert_session_p = c_void_p
moert_sampler_p = c_void_p


class moert_model_options(Structure):
    """``moert_model_options``: options for ``moert_model_load()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("max_context", c_int64),
    ]


class moert_model_info(Structure):
    """``moert_model_info``: facts about a loaded model, filled by ``moert_model_get_info()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("architecture", c_char_p),
        ("vocab_size", c_int32),
        ("hidden_size", c_int32),
        ("n_layers", c_int32),
        ("n_moe_layers", c_int32),
        ("n_experts", c_int32),
        ("n_experts_per_tok", c_int32),
        ("n_heads", c_int32),
        ("n_kv_heads", c_int32),
        ("head_dim", c_int32),
        ("dtype", c_int32),
        ("context_length", c_int64),
        ("n_params", c_int64),
        ("file_bytes", c_int64),
        ("weight_bytes", c_int64),
        ("bos_token_id", c_int32),
        ("eos_token_id", c_int32),
    ]


class moert_session_options(Structure):
    """``moert_session_options``: options for ``moert_session_create()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("n_ctx", c_int64),
        ("max_batch", c_int32),
    ]


class moert_sampler_options(Structure):
    """``moert_sampler_options``: sampling parameters (the defaults are greedy)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("seed", c_uint64),
    ]


class moert_generate_options(Structure):
    """``moert_generate_options``: options for ``moert_session_generate()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("max_new_tokens", c_int32),
        ("ignore_eos", c_int32),
        ("sampler", POINTER(moert_sampler_options)),
    ]


#: ``typedef int32_t (*moert_token_callback)(int32_t token, void *user_data)``
moert_token_callback = CFUNCTYPE(c_int32, c_int32, c_void_p)



class moert_trace(Structure):
    """``moert_trace``: the routing trace, one record per (token, MoE layer); the arrays are owned by the session."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_records", c_int64),
        ("positions", POINTER(c_int32)),
        ("layers", POINTER(c_int32)),
        ("tokens", POINTER(c_int32)),
        ("offsets", POINTER(c_int64)),
        ("expert_ids", POINTER(c_int32)),
        ("weights", POINTER(c_float)),
    ]
