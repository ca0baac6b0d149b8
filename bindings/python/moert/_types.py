"""ctypes mirrors of the constants, structs and callback types of moert.h and moert_plugin.h (same names, same
layout, same field order)."""

from __future__ import annotations

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_int64,
    c_size_t,
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
    "MOERT_DTYPE_Q8_0",
    "MOERT_DTYPE_Q4_0",
    "MOERT_DTYPE_Q3_0",
    "MOERT_DTYPE_Q4_K",
    "MOERT_LOGITS_NONE",
    "MOERT_LOGITS_LAST",
    "MOERT_LOGITS_ALL",
    "MOERT_KV_TYPE_F32",
    "MOERT_KV_TYPE_F16",
    "MOERT_KV_TYPE_BF16",
    "MOERT_KV_TYPE_Q8_0",
    "MOERT_SESSION_CONTEXT_SHIFT",
    "KV_TYPES",
    "MOERT_LOG_ERROR",
    "MOERT_LOG_WARN",
    "MOERT_LOG_INFO",
    "MOERT_LOG_DEBUG",
    "MOERT_MODEL_TRUST_PLUGIN_PATHS",
    "MOERT_MODEL_NO_MMAP",
    "MOERT_ENCODE_ADD_SPECIAL",
    "MOERT_ENCODE_PARSE_SPECIAL",
    "MOERT_DECODE_SKIP_SPECIAL",
    "moert_log_callback",
    "moert_status",
    "moert_model_p",
    "moert_session_p",
    "moert_sampler_p",
    "moert_tokenizer_p",
    "moert_detokenizer_p",
    "moert_model_options",
    "moert_model_info",
    "moert_session_options",
    "moert_sampler_options",
    "moert_generate_options",
    "moert_token_callback",
    "moert_trace",
    "moert_memory_stats",
    "moert_chat_message",
    "moert_chat_options",
    "MOERT_KIND_ROUTER",
    "MOERT_KIND_EXPERT",
    # moert_plugin.h
    "MOERT_PLUGIN_ABI_VERSION",
    "MOERT_TENSOR_F32",
    "MOERT_TENSOR_I32",
    "MOERT_EXPERT_ZERO_COMPUTE",
    "MOERT_EXPERT_OUTPUT_ZERO",
    "MOERT_EXPERT_OUTPUT_IDENTITY",
    "moert_create_context_p",
    "moert_tensor",
    "moert_layer_info",
    "moert_router_caps",
    "moert_router_input",
    "moert_router_output",
    "router_create_fn",
    "router_route_fn",
    "destroy_fn",
    "moert_router_ops",
    "expert_create_fn",
    "expert_forward_fn",
    "moert_expert_ops",
    "moert_host_api",
    "moert_plugin_init_fn",
]

# Versions of the header this binding mirrors. MOERT_VERSION is also the package's version: moert.__version__ and
# pyproject.toml take it from here.
MOERT_VERSION = "0.2.0"
#: MAJOR*1000000 + MINOR*1000 + PATCH of MOERT_VERSION, as moert.h defines it.
MOERT_VERSION_NUMBER = sum(int(part) * scale for part, scale in zip(MOERT_VERSION.split("."), (1000000, 1000, 1)))
MOERT_ABI_VERSION = 1

# Log levels (moert_set_log_callback, host->log); lower is more severe.
MOERT_LOG_ERROR = 0
MOERT_LOG_WARN = 1
MOERT_LOG_INFO = 2
MOERT_LOG_DEBUG = 3

#: ``typedef void (*moert_log_callback)(int32_t level, const char *message, void *user_data)``
moert_log_callback = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)

# moert_model_options.flags
MOERT_MODEL_TRUST_PLUGIN_PATHS = 0x1
MOERT_MODEL_NO_MMAP = 0x2

# moert_model_info.dtype
MOERT_DTYPE_F32 = 0
MOERT_DTYPE_F16 = 1
MOERT_DTYPE_BF16 = 2
MOERT_DTYPE_MIXED = 3
MOERT_DTYPE_Q8_0 = 4
MOERT_DTYPE_Q4_0 = 5
MOERT_DTYPE_Q3_0 = 6
MOERT_DTYPE_Q4_K = 7

# moert_kind_count() / moert_kind_name() kinds (moert_plugin.h)
MOERT_KIND_ROUTER = 0
MOERT_KIND_EXPERT = 1

# moert_tokenizer_encode() flags
MOERT_ENCODE_ADD_SPECIAL = 0x1
MOERT_ENCODE_PARSE_SPECIAL = 0x2

# moert_tokenizer_decode() and moert_detokenizer_create() flags
MOERT_DECODE_SKIP_SPECIAL = 0x1

# moert_session_eval() logits_mode
MOERT_LOGITS_NONE = 0
MOERT_LOGITS_LAST = 1
MOERT_LOGITS_ALL = 2

# KV cache element types (moert_session_options.kv_type) and session flags
MOERT_KV_TYPE_F32 = 0
MOERT_KV_TYPE_F16 = 1
MOERT_KV_TYPE_BF16 = 2
MOERT_KV_TYPE_Q8_0 = 3
MOERT_SESSION_CONTEXT_SHIFT = 0x1
#: The ``kv_type`` names of :class:`~moert.Session` and their MOERT_KV_TYPE_* values.
KV_TYPES = {"f32": MOERT_KV_TYPE_F32, "f16": MOERT_KV_TYPE_F16, "bf16": MOERT_KV_TYPE_BF16, "q8_0": MOERT_KV_TYPE_Q8_0}

#: ``typedef int32_t moert_status``
moert_status = c_int32

# Opaque handles travel as void pointers; the Python objects keep them as ints.
moert_model_p = c_void_p
moert_session_p = c_void_p
moert_sampler_p = c_void_p
moert_tokenizer_p = c_void_p
moert_detokenizer_p = c_void_p


class moert_model_options(Structure):
    """``moert_model_options``: options for ``moert_model_load()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("max_context", c_int64),
        ("expert_budget_bytes", c_int64),
        ("expert_budget_percent", c_float),
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
        ("kv_type", c_int32),
        ("n_keep", c_int32),
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
        # 0.2.0 and later
        ("tokenizer", moert_tokenizer_p),
        ("stop_strings", POINTER(c_char_p)),
        ("n_stop_strings", c_int32),
        ("scmoe_weak_rank", c_int32),
        ("scmoe_beta", c_float),
        ("scmoe_alpha", c_float),
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


class moert_memory_stats(Structure):
    """``moert_memory_stats``: memory use of a model, filled by ``moert_model_get_memory_stats()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("allocator", c_char_p),
        ("expert_bytes_total", c_int64),
        ("expert_bytes_resident", c_int64),
        ("expert_budget_bytes", c_int64),
        ("mapped_bytes", c_int64),
        ("converted_bytes", c_int64),
        ("arena_active_bytes", c_int64),
        ("arena_mapped_bytes", c_int64),
        ("hits", c_int64),
        ("misses", c_int64),
        ("bytes_loaded", c_int64),
        ("evictions", c_int64),
    ]


class moert_chat_message(Structure):
    """``moert_chat_message``: one message of a conversation for ``moert_tokenizer_apply_chat_template()``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("role", c_char_p),
        ("content", c_char_p),
    ]


class moert_chat_options(Structure):
    """``moert_chat_options``: options of the chat template functions."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("add_generation_prompt", c_int32),
        ("template_name", c_char_p),
        ("variables_json", c_char_p),
    ]


# ---------------------------------------------------------------------------------------------------------------
# moert_plugin.h
# ---------------------------------------------------------------------------------------------------------------

MOERT_PLUGIN_ABI_VERSION = 1

# moert_tensor.dtype
MOERT_TENSOR_F32 = 0
MOERT_TENSOR_I32 = 1

# moert_expert_ops.flags
MOERT_EXPERT_ZERO_COMPUTE = 0x1
MOERT_EXPERT_OUTPUT_ZERO = 0x2
MOERT_EXPERT_OUTPUT_IDENTITY = 0x4

#: ``const moert_create_context *`` (opaque)
moert_create_context_p = c_void_p


class moert_tensor(Structure):
    """``moert_tensor``: a read-only tensor borrowed from the model (float32 or int32, row-major)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("dtype", c_int32),
        ("data", c_void_p),
        ("ndim", c_int32),
        ("shape", c_int64 * 4),
    ]


class moert_layer_info(Structure):
    """``moert_layer_info``: facts about the MoE layer a router or expert instance is created for."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("layer", c_int32),
        ("moe_index", c_int32),
        ("n_moe_layers", c_int32),
        ("hidden_size", c_int32),
        ("n_experts", c_int32),
        ("top_k", c_int32),
        ("vocab_size", c_int32),
        ("expert_index", c_int32),
    ]


class moert_router_caps(Structure):
    """``moert_router_caps``: what a router instance declares at create()."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("max_experts_per_token", c_int32),
        ("state_size", c_int32),
    ]


class moert_router_input(Structure):
    """``moert_router_input``: one batch of tokens at one MoE layer (all pointers borrowed for the call)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_int32),
        ("hidden_size", c_int32),
        ("x", POINTER(c_float)),
        ("token_ids", POINTER(c_int32)),
        ("positions", POINTER(c_int32)),
        ("prev_token_ids", POINTER(c_int32)),
        ("state", POINTER(c_float)),
        ("state_stride", c_int32),
        ("prev_logits", POINTER(c_float)),
        ("prev_logits_width", c_int32),
    ]


class moert_router_output(Structure):
    """``moert_router_output``: buffers moert allocates and a router fills."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("max_per_token", c_int32),
        ("expert_ids", POINTER(c_int32)),
        ("weights", POINTER(c_float)),
        ("counts", POINTER(c_int32)),
        ("logits", POINTER(c_float)),
    ]


class moert_host_api(Structure):
    """``moert_host_api``: the functions moert offers plugins (its fields are declared below)."""


#: ``moert_router_ops.create``
router_create_fn = CFUNCTYPE(
    c_int32,
    POINTER(moert_host_api),
    moert_create_context_p,
    POINTER(moert_layer_info),
    POINTER(moert_router_caps),
    POINTER(c_void_p),
)
#: ``moert_router_ops.route``
router_route_fn = CFUNCTYPE(c_int32, c_void_p, POINTER(moert_router_input), POINTER(moert_router_output))
#: ``moert_router_ops.destroy`` and ``moert_expert_ops.destroy``
destroy_fn = CFUNCTYPE(None, c_void_p)
#: ``moert_expert_ops.create``
expert_create_fn = CFUNCTYPE(
    c_int32, POINTER(moert_host_api), moert_create_context_p, POINTER(moert_layer_info), POINTER(c_void_p)
)
#: ``moert_expert_ops.forward``
expert_forward_fn = CFUNCTYPE(c_int32, c_void_p, POINTER(c_float), c_int32, c_int32, POINTER(c_float))


class moert_router_ops(Structure):
    """``moert_router_ops``: a router kind's table."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("abi_version", c_uint32),
        ("name", c_char_p),
        ("create", router_create_fn),
        ("route", router_route_fn),
        ("destroy", destroy_fn),
    ]


class moert_expert_ops(Structure):
    """``moert_expert_ops``: an expert kind's table."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("abi_version", c_uint32),
        ("name", c_char_p),
        ("flags", c_uint32),
        ("create", expert_create_fn),
        ("forward", expert_forward_fn),
        ("destroy", destroy_fn),
    ]


moert_host_api._fields_ = [
    ("struct_size", c_uint32),
    ("abi_version", c_uint32),
    ("alloc", CFUNCTYPE(c_void_p, c_size_t, c_size_t)),
    ("free", CFUNCTYPE(None, c_void_p)),
    ("log", CFUNCTYPE(None, c_int32, c_char_p)),
    ("set_error", CFUNCTYPE(None, c_char_p)),
    ("register_router", CFUNCTYPE(c_int32, c_void_p, POINTER(moert_router_ops))),
    ("register_expert", CFUNCTYPE(c_int32, c_void_p, POINTER(moert_expert_ops))),
    ("layer_tensor", CFUNCTYPE(c_int32, moert_create_context_p, c_char_p, POINTER(moert_tensor))),
    ("model_tensor", CFUNCTYPE(c_int32, moert_create_context_p, c_char_p, POINTER(moert_tensor))),
    ("param_number", CFUNCTYPE(c_int32, moert_create_context_p, c_char_p, POINTER(c_double))),
    ("param_string", CFUNCTYPE(c_int32, moert_create_context_p, c_char_p, POINTER(c_char_p))),
    (
        "sgemm",
        CFUNCTYPE(
            None,
            c_int32,
            c_int32,
            c_int32,
            c_int32,
            c_int32,
            c_float,
            POINTER(c_float),
            c_int32,
            POINTER(c_float),
            c_int32,
            c_float,
            POINTER(c_float),
            c_int32,
        ),
    ),
]

#: ``moert_plugin_init_fn``: the signature of a plugin library's entry point.
moert_plugin_init_fn = CFUNCTYPE(c_int32, POINTER(moert_host_api), c_void_p)
