/* fixture.h — a test fixture of Tests/fixtures as the host API test sees it: what its config.json and weight files
   say the model is, and the transformers outputs of its reference.safetensors (see tools/make_fixtures.py). */
#ifndef MOERT_TESTS_API_FIXTURE_H
#define MOERT_TESTS_API_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

/** The most tokens (prompt and continuation) a fixture's reference holds. */
#define MAX_TOKENS 64

/** What a fixture's config.json and model files say about the model: the expected moert_model_info. */
typedef struct expected_info {
    char architecture[64];
    int64_t vocab_size, hidden_size, n_layers, n_moe_layers, n_experts, n_experts_per_tok;
    int64_t n_heads, n_kv_heads, head_dim, context_length, bos_token_id, eos_token_id;
    int64_t eos_token_ids[8];  /* every id eos_token_id names (an integer or an array of them) */
    int32_t n_eos_token_ids;
    uint64_t moe_layer_mask; /* bit l set when decoder layer l has a sparse MLP */
    int renormalizes;        /* top-k weights sum to 1 before scaling (Mixtral, gpt-oss always; others with norm_topk_prob) */
    double weight_scale;     /* routed_scaling_factor (1 when absent) */
    int sigmoid_scores;      /* DeepSeek-V3, GLM-4.5: each weight is a sigmoid (at most 1) before scaling */
    int64_t window;          /* sliding_window when shorter than the context, else 0 */
    int64_t n_windowed_layers; /* layers that attend within it (and keep only `window` positions) */
    int32_t dtype;       /* from the dtypes found in the model's safetensors headers */
    int64_t n_params;    /* elements of the stored weights (rotary buffers excluded) */
    int64_t file_bytes;  /* sizes of the model's safetensors files */
    int latent;          /* multi-head latent attention (DeepSeek): the cache holds one latent row per position */
    int64_t cache_values; /* values cached per position and layer: 2 x kv heads x head_dim, or kv_lora_rank +
                             qk_rope_head_dim */
    int64_t n_mtp_layers; /* DeepSeek-V3 / GLM-4.5 multi-token-prediction layers after the decoder layers (not counted) */
} expected_info;

/** One fixture directory with its reference outputs. */
typedef struct fixture {
    char name[64];
    char dir[1024];
    int32_t *prompt;     /* [n_prompt] */
    int32_t *greedy;     /* [n_greedy] */
    float *logits;       /* [n_prompt, vocab] */
    float *full_logits;  /* [n_prompt + n_greedy, vocab] */
    size_t n_prompt, n_greedy, vocab;
    expected_info want;
} fixture;

/** Loads everything the checks need about fixture `name` under `root`. Returns 0 (and prints why) on failure. */
int fixture_load(fixture *fx, const char *root, const char *name);

/** Releases a fixture's buffers. */
void fixture_free(fixture *fx);

/** Reads a whole file into a malloc'd buffer (NUL-terminated for convenience). Returns 0 on failure. */
int read_file(const char *path, unsigned char **out, size_t *out_size);

/** The prompt followed by the greedy continuation: the sequence `full_logits` was computed on. */
size_t fixture_sequence(const fixture *fx, int32_t *out);

#endif /* MOERT_TESTS_API_FIXTURE_H */
