/* router_test.h — what the files of the router plugin test share: the fake host, calls made the way moert makes
   them, and each file's checks. */
#ifndef MOERT_TESTS_ROUTER_TEST_H
#define MOERT_TESTS_ROUTER_TEST_H

#include <moert_plugin.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../check.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* The fake host (fake_host.c)                                                                                  */
/* ------------------------------------------------------------------------------------------------------------ */

/** A tensor of the in-memory "checkpoint", by full name. */
typedef struct fake_tensor {
    char name[160];
    int32_t dtype;
    int32_t ndim;
    int64_t shape[4];
    void *data;
} fake_tensor;

/** A parameter of one create() call. */
typedef struct fake_param {
    const char *key;
    int type;  /* PARAM_NUMBER, PARAM_STRING or PARAM_BOOL */
    double number;
    const char *string;
} fake_param;

enum { PARAM_NUMBER = 0, PARAM_STRING = 1, PARAM_BOOL = 2 };

#define NUM(k, v) ((fake_param){(k), PARAM_NUMBER, (v), NULL})
#define STR(k, v) ((fake_param){(k), PARAM_STRING, 0, (v)})
#define BOOL(k, v) ((fake_param){(k), PARAM_BOOL, (v), NULL})

/** What moert_create_context stands for here: the block prefix and the parameters. */
struct moert_create_context {
    const char *prefix;
    const fake_param *params;
    int n_params;
};

/** Blocks from host->alloc not yet given back to host->free: a plugin's leaks. */
extern atomic_int live_allocations;
/** The last message given to host->set_error on this thread, and how many calls there were. */
extern _Thread_local char last_error[1024];
extern _Thread_local int error_calls;

/** Kinds captured by register_router; register_router accepts only &registry_token as the host context. */
#define MAX_KINDS 16
extern const moert_router_ops *kinds[MAX_KINDS];
extern int kind_count;
/** Expert kinds a router plugin registers beside its router (hash.relu_ffn), kept but not exercised here. */
extern const moert_expert_ops *expert_kinds[MAX_KINDS];
extern int expert_kind_count;
extern int registry_token;

/** A complete host table of this ABI over the fake host. */
moert_host_api make_host(void);

/** The registered router kind named `name`, or NULL. */
const moert_router_ops *kind_named(const char *name);

/** Empties the tensor store. */
void store_clear(void);

/** Adds a zeroed tensor to the store; returns its data. */
void *add_tensor(const char *name, int32_t dtype, int32_t ndim, int64_t d0, int64_t d1, int64_t d2);

/** Adds a float32 tensor of uniform random values in [-scale, scale); returns its data. */
float *add_random(const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2, float scale);

/** The stored tensor named `name`, or NULL. */
fake_tensor *tensor_named(const char *name);

/** Removes a tensor from the store. */
void remove_tensor(const char *name);

/** Deterministic random numbers (xorshift64*): uniform in [lo, hi), and uniform in [0, n). */
float urand(float lo, float hi);
int32_t irand(int32_t n);

/* ------------------------------------------------------------------------------------------------------------ */
/* Calling a router kind as moert does (calls.c)                                                                */
/* ------------------------------------------------------------------------------------------------------------ */

/** Weights, logits and states must agree with the references within TOL (see main.c for why). */
#define TOL 1e-5

/** |got - want| <= tol * max(1, |want|), false for NaN. */
int close_to(double got, double want, double tol);

/** The layer facts moert hands create() for decoder layer `layer` of a model with four MoE layers. */
moert_layer_info make_layer(int32_t layer, int32_t H, int32_t E, int32_t top_k, int32_t vocab);

/** Calls create() the way moert does (caps prefilled with the defaults, a fresh copy of the host table). */
moert_status create_router(const moert_router_ops *ops, const char *prefix, const fake_param *params, int n_params,
                           const moert_layer_info *layer, moert_router_caps *caps, void **out);

/** Output buffers of one route() call, prefilled with sentinels. */
typedef struct route_out {
    int32_t n, cap, experts;
    int32_t *ids;
    float *weights;
    int32_t *counts;
    float *logits;
    moert_router_output out;
} route_out;

void route_out_init(route_out *r, int32_t n, int32_t cap, int32_t experts);
void route_out_free(route_out *r);

/** The input of one route() call over borrowed arrays. */
moert_router_input make_input(int32_t n, int32_t H, const float *x, const int32_t *tokens, const int32_t *pos,
                              const int32_t *prev, float *state, int32_t stride);

/** Runs a create() that must fail: non-OK status, set_error called with a message containing `substring` (unless
    NULL), no instance, no leak. One named check. */
void expect_create_fails(const char *name, const moert_router_ops *ops, const char *prefix, const fake_param *params,
                         int n_params, const moert_layer_info *layer, const char *substring);

/** Sorted-descending selection of at most `cap` entries of v[0..n) with v > floor, ties to the lower index. */
int32_t ref_select(const double *v, int32_t n, int32_t cap, double floor_value, int32_t *ids);

/** Routes one batch on one thread, then the same batch from 4 threads at once: every result must be identical.
    `r` floats of state per token when non-zero. One named check. */
void race(const char *label, const moert_router_ops *ops, void *inst, int32_t n, int32_t H, int32_t E, int32_t cap,
          int32_t r);

/* ------------------------------------------------------------------------------------------------------------ */
/* The checks, by file                                                                                          */
/* ------------------------------------------------------------------------------------------------------------ */

/** loading.c: dlopens a plugin library, checks its refusals of foreign host tables, then initialises it. */
void load_plugin(const char *path);

/** gru.c: routing against the reference, malformed checkpoints, and route() from several threads. */
void test_gru(const moert_router_ops *ops);
void test_gru_concurrency(const moert_router_ops *ops);

/** hash.c: routing against the reference and malformed tables. */
void test_hash(const moert_router_ops *ops);

/** comet.c: routing against the reference, its variants, malformed checkpoints, and route() from several threads. */
void test_comet(const moert_router_ops *ops);
void test_comet_concurrency(const moert_router_ops *ops);

#endif /* MOERT_TESTS_ROUTER_TEST_H */
