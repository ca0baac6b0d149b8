/* gru.c — the gru router plugin (RMoE, ALGORITHMS.md §2) against a reference written from the formulas. */
#define _POSIX_C_SOURCE 200809L

#include "router_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gru_case {
    const char *label;
    int32_t H, r, E, k, n, layers;
    int rnn;
    int normalize;   /* -1: parameter absent (default true) */
    int k_param;     /* pass top_k as a parameter (the layer's top_k is then E) */
    int32_t pad;     /* extra state floats per token beyond r */
    int ties;        /* weight2 rows 1 and 3 equal, row 0 equal to row 2 */
} gru_case;

static const char *gate_names[3] = {"r", "z", "n"};

/** Fills the store with a cell under `prefix` and per-layer weight1/weight2. */
static void gru_make_weights(const gru_case *gc, const char *prefix) {
    char name[200];
    const float cs = 1.0f / sqrtf((float)gc->r) * 1.5f;
    for (int g = gc->rnn ? 2 : 0; g < 3; g++) {
        for (int side = 0; side < 2; side++) {
            snprintf(name, sizeof name, "%sweight_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            add_random(name, 2, gc->r, gc->r, 0, cs);
            snprintf(name, sizeof name, "%sbias_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            add_random(name, 1, gc->r, 0, 0, 0.3f);
        }
    }
    for (int32_t l = 0; l < gc->layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.weight1", (int)l);
        add_random(name, 2, gc->r, gc->H, 0, 2.0f / sqrtf((float)gc->H));
        snprintf(name, sizeof name, "model.layers.%d.mlp.weight2", (int)l);
        float *w2 = add_random(name, 2, gc->E, gc->r, 0, 3.0f / sqrtf((float)gc->r));
        if (gc->ties) {
            memcpy(w2 + 3 * gc->r, w2 + 1 * gc->r, sizeof(float) * (size_t)gc->r);
            memcpy(w2 + 2 * gc->r, w2 + 0 * gc->r, sizeof(float) * (size_t)gc->r);
        }
    }
}

static const float *tensor_data(const char *name) {
    const fake_tensor *t = tensor_named(name);
    return t != NULL ? (const float *)t->data : NULL;
}

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

/**
 * Reference RMoE step for one token (ALGORITHMS.md §2): u = W1 x; GRU (or RNN) update of h; logits = W2 h';
 * softmax; top-k; renormalise. h is updated in place.
 */
static int32_t ref_gru_token(const gru_case *gc, const char *prefix, int32_t l, const float *x, double *h,
                             double *logits, int32_t *ids, double *weights) {
    char name[200];
    const int32_t H = gc->H, r = gc->r, E = gc->E, k = gc->k;
    snprintf(name, sizeof name, "model.layers.%d.mlp.weight1", (int)l);
    const float *w1 = tensor_data(name);
    snprintf(name, sizeof name, "model.layers.%d.mlp.weight2", (int)l);
    const float *w2 = tensor_data(name);
    const float *W[2][3], *B[2][3];
    for (int g = gc->rnn ? 2 : 0; g < 3; g++) {
        for (int side = 0; side < 2; side++) {
            snprintf(name, sizeof name, "%sweight_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            W[side][g] = tensor_data(name);
            snprintf(name, sizeof name, "%sbias_%c%s", prefix, side == 0 ? 'i' : 'h', gate_names[g]);
            B[side][g] = tensor_data(name);
        }
    }
    double u[64], hn[64];
    for (int32_t i = 0; i < r; i++) {
        u[i] = 0;
        for (int32_t c = 0; c < H; c++) u[i] += (double)w1[i * H + c] * x[c];
    }
    for (int32_t i = 0; i < r; i++) {
        double pre[2][3];
        for (int g = gc->rnn ? 2 : 0; g < 3; g++) {
            double si = B[0][g][i], sh = B[1][g][i];
            for (int32_t j = 0; j < r; j++) {
                si += (double)W[0][g][i * r + j] * u[j];
                sh += (double)W[1][g][i * r + j] * h[j];
            }
            pre[0][g] = si;
            pre[1][g] = sh;
        }
        if (gc->rnn) {
            hn[i] = tanh(pre[0][2] + pre[1][2]);
        } else {
            double rg = sigmoid(pre[0][0] + pre[1][0]);
            double zg = sigmoid(pre[0][1] + pre[1][1]);
            double ng = tanh(pre[0][2] + rg * pre[1][2]);
            hn[i] = (1 - zg) * ng + zg * h[i];
        }
    }
    for (int32_t i = 0; i < r; i++) h[i] = hn[i];
    double p[64], m = -INFINITY, sum = 0;
    for (int32_t e = 0; e < E; e++) {
        logits[e] = 0;
        for (int32_t i = 0; i < r; i++) logits[e] += (double)w2[e * r + i] * h[i];
        m = logits[e] > m ? logits[e] : m;
    }
    for (int32_t e = 0; e < E; e++) sum += (p[e] = exp(logits[e] - m));
    for (int32_t e = 0; e < E; e++) p[e] /= sum;
    int32_t count = ref_select(p, E, k, -1.0, ids);
    double chosen = 0;
    for (int32_t j = 0; j < count; j++) chosen += p[ids[j]];
    for (int32_t j = 0; j < count; j++) weights[j] = gc->normalize == 0 ? p[ids[j]] : p[ids[j]] / chosen;
    return count;
}

static void test_gru_case(const moert_router_ops *ops, const gru_case *gc, const char *prefix) {
    char name[256];
    store_clear();
    gru_make_weights(gc, prefix);
    const int32_t n = gc->n, H = gc->H, r = gc->r, E = gc->E, stride = r + gc->pad;
    fake_param params[4];
    int np = 0;
    if (gc->rnn) params[np++] = STR("cell", "rnn");
    if (gc->normalize >= 0) params[np++] = BOOL("normalize", gc->normalize);
    if (gc->k_param) params[np++] = NUM("top_k", gc->k);
    if (strcmp(prefix, "model.rnn_router.") != 0) params[np++] = STR("global_prefix", prefix);

    float *state = (float *)malloc(sizeof(float) * (size_t)(n * stride));
    double *ref_h = (double *)calloc((size_t)(n * r), sizeof(double));
    for (int32_t t = 0; t < n; t++) {
        for (int32_t i = 0; i < stride; i++) state[t * stride + i] = i < r ? 0.0f : 123.0f;
    }
    int32_t tokens[64], pos[64], prev[64];
    for (int32_t t = 0; t < n; t++) {
        tokens[t] = t;
        pos[t] = t;
        prev[t] = t - 1;
    }
    int ok_caps = 1, ok_status = 1, ok_ids = 1, ok_w = 1, ok_logits = 1, ok_state = 1, ok_pad = 1;
    char why[512] = "";
    for (int32_t l = 0; l < gc->layers; l++) {
        moert_layer_info layer = make_layer(l, H, E, gc->k_param ? E : gc->k, 100);
        char lp[64];
        snprintf(lp, sizeof lp, "model.layers.%d.mlp.", (int)l);
        moert_router_caps caps;
        void *inst = NULL;
        error_calls = 0;
        moert_status status = create_router(ops, lp, params, np, &layer, &caps, &inst);
        if (status != MOERT_OK) {
            snprintf(why, sizeof why, "create of layer %d failed: %.200s", (int)l, last_error);
            ok_status = 0;
            break;
        }
        if (caps.max_experts_per_token != gc->k || caps.state_size != r) ok_caps = 0;
        float *x = (float *)malloc(sizeof(float) * (size_t)(n * H));
        for (int32_t i = 0; i < n * H; i++) x[i] = urand(-1.0f, 1.0f);
        route_out ro;
        route_out_init(&ro, n, caps.max_experts_per_token, E);
        moert_router_input in = make_input(n, H, x, tokens, pos, prev, state, stride);
        status = ops->route(inst, &in, &ro.out);
        if (status != MOERT_OK) {
            snprintf(why, sizeof why, "route of layer %d failed: %.200s", (int)l, last_error);
            ok_status = 0;
        }
        for (int32_t t = 0; t < n && status == MOERT_OK; t++) {
            double logits[64], weights[64];
            int32_t ids[64];
            int32_t count = ref_gru_token(gc, prefix, l, x + t * H, ref_h + t * r, logits, ids, weights);
            if (ro.counts[t] != count) {
                ok_ids = 0;
                snprintf(why, sizeof why, "layer %d token %d: count %d, want %d", (int)l, (int)t, (int)ro.counts[t],
                         (int)count);
                continue;
            }
            for (int32_t j = 0; j < count; j++) {
                if (ro.ids[t * ro.cap + j] != ids[j]) {
                    ok_ids = 0;
                    snprintf(why, sizeof why, "layer %d token %d rank %d: expert %d, want %d", (int)l, (int)t, (int)j,
                             (int)ro.ids[t * ro.cap + j], (int)ids[j]);
                }
                if (!close_to(ro.weights[t * ro.cap + j], weights[j], TOL)) {
                    ok_w = 0;
                    snprintf(why, sizeof why, "layer %d token %d rank %d: weight %.8g, want %.8g", (int)l, (int)t,
                             (int)j, ro.weights[t * ro.cap + j], weights[j]);
                }
            }
            for (int32_t e = 0; e < E; e++) {
                if (!close_to(ro.logits[t * E + e], logits[e], TOL)) {
                    ok_logits = 0;
                    snprintf(why, sizeof why, "layer %d token %d expert %d: logit %.8g, want %.8g", (int)l, (int)t,
                             (int)e, ro.logits[t * E + e], logits[e]);
                }
            }
            for (int32_t i = 0; i < stride; i++) {
                float v = state[t * stride + i];
                if (i < r && !close_to(v, ref_h[t * r + i], TOL)) {
                    ok_state = 0;
                    snprintf(why, sizeof why, "layer %d token %d: state[%d] %.8g, want %.8g", (int)l, (int)t, (int)i,
                             v, ref_h[t * r + i]);
                }
                if (i >= r && v != 123.0f) ok_pad = 0;
            }
            // The plugin's state continues from its own output; keep the reference on the same path.
            for (int32_t i = 0; i < r; i++) ref_h[t * r + i] = state[t * stride + i];
        }
        route_out_free(&ro);
        free(x);
        ops->destroy(inst);
    }
    snprintf(name, sizeof name, "gru %s: create and route succeed", gc->label);
    check(ok_status, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: caps max_experts_per_token = top_k, state_size = r", gc->label);
    check(ok_caps, name, "caps differ");
    snprintf(name, sizeof name, "gru %s: expert ids and counts equal the reference", gc->label);
    check(ok_ids, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: weights within 1e-5", gc->label);
    check(ok_w, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: logits within 1e-5", gc->label);
    check(ok_logits, name, "%s", why);
    snprintf(name, sizeof name, "gru %s: state h' within 1e-5, padding untouched", gc->label);
    check(ok_state && ok_pad, name, "%s%s", why, ok_pad ? "" : " (padding overwritten)");
    free(state);
    free(ref_h);
    store_clear();
}

static void test_gru_bad_inputs(const moert_router_ops *ops) {
    const gru_case gc = {"bad", 8, 4, 6, 2, 3, 1, 0, -1, 0, 0, 0};
    const char *lp = "model.layers.0.mlp.";
    moert_layer_info layer = make_layer(0, 8, 6, 2, 100);
    fake_param none[1] = {NUM("unused", 0)};

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight2");
    expect_create_fails("gru rejects a missing weight2", ops, lp, none, 0, &layer, "weight2");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight1");
    add_random("model.layers.0.mlp.weight1", 2, 4, 7, 0, 1.0f);
    expect_create_fails("gru rejects weight1 [r, H-1]", ops, lp, none, 0, &layer, "weight1");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight2");
    add_random("model.layers.0.mlp.weight2", 2, 5, 4, 0, 1.0f);
    expect_create_fails("gru rejects weight2 [E-1, r]", ops, lp, none, 0, &layer, "weight2");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.rnn_router.weight_hz");
    add_random("model.rnn_router.weight_hz", 2, 4, 3, 0, 1.0f);
    expect_create_fails("gru rejects weight_hz [r, r-1]", ops, lp, none, 0, &layer, "weight_hz");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.rnn_router.bias_in");
    expect_create_fails("gru rejects a missing bias_in", ops, lp, none, 0, &layer, "bias_in");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    remove_tensor("model.layers.0.mlp.weight1");
    add_tensor("model.layers.0.mlp.weight1", MOERT_TENSOR_I32, 2, 4, 8, 0);
    expect_create_fails("gru rejects an integer weight1", ops, lp, none, 0, &layer, "weight1");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    ((float *)tensor_named("model.rnn_router.weight_ir")->data)[5] = NAN;
    expect_create_fails("gru rejects a NaN in weight_ir", ops, lp, none, 0, &layer, "weight_ir");

    store_clear();
    gru_make_weights(&gc, "model.rnn_router.");
    fake_param lstm[1] = {STR("cell", "lstm")};
    expect_create_fails("gru rejects cell \"lstm\"", ops, lp, lstm, 1, &layer, "cell");
    fake_param cell_number[1] = {NUM("cell", 1)};
    expect_create_fails("gru rejects a numeric cell", ops, lp, cell_number, 1, &layer, "cell");
    fake_param k0[1] = {NUM("top_k", 0)};
    expect_create_fails("gru rejects top_k 0", ops, lp, k0, 1, &layer, "top_k");
    fake_param k7[1] = {NUM("top_k", 7)};
    expect_create_fails("gru rejects top_k > E", ops, lp, k7, 1, &layer, "top_k");
    fake_param kfrac[1] = {NUM("top_k", 1.5)};
    expect_create_fails("gru rejects top_k 1.5", ops, lp, kfrac, 1, &layer, "top_k");
    moert_layer_info big_k = make_layer(0, 8, 6, 9, 100);
    expect_create_fails("gru rejects a layer top_k > E", ops, lp, none, 0, &big_k, "top_k");
    fake_param prefix[1] = {STR("global_prefix", "model.other_router.")};
    expect_create_fails("gru rejects a global_prefix without tensors", ops, lp, prefix, 1, &layer, "other_router");
    moert_layer_info wrong_h = make_layer(0, 9, 6, 2, 100);
    expect_create_fails("gru rejects weights of another hidden size", ops, lp, none, 0, &wrong_h, "weight1");

    // The rnn cell needs only the _in and _hn tensors.
    store_clear();
    gru_case rnn = gc;
    rnn.rnn = 1;
    gru_make_weights(&rnn, "model.rnn_router.");
    fake_param cell_rnn[1] = {STR("cell", "rnn")};
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, lp, cell_rnn, 1, &layer, &caps, &inst);
    check(status == MOERT_OK, "gru rnn cell needs only weight_in/hn and bias_in/hn", "%s", last_error);

    // route() refuses bad calls with a message instead of crashing.
    if (status == MOERT_OK) {
        float x[3 * 8] = {0};
        int32_t tokens[3] = {1, 2, 3}, pos[3] = {0, 1, 2}, prev[3] = {-1, 1, 2};
        route_out ro;
        route_out_init(&ro, 3, caps.max_experts_per_token, 6);
        moert_router_input in = make_input(3, 8, x, tokens, pos, prev, NULL, 0);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route without state fails with a message", "status %d",
              (int)status);
        float state[3 * 4] = {0};
        in = make_input(3, 7, x, tokens, pos, prev, state, 4);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route with the wrong hidden size fails with a message",
              "status %d", (int)status);
        in = make_input(3, 8, x, tokens, pos, prev, state, 3);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route with state_stride < r fails with a message",
              "status %d", (int)status);
        x[3] = NAN;
        in = make_input(3, 8, x, tokens, pos, prev, state, 4);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "gru route with a NaN input fails with a message", "status %d",
              (int)status);
        route_out_free(&ro);
        ops->destroy(inst);
    }
    store_clear();
    check(atomic_load(&live_allocations) == 0, "gru frees everything it allocates", "%d live allocations",
          atomic_load(&live_allocations));
}

void test_gru(const moert_router_ops *ops) {
    static const gru_case cases[] = {
        /* label                   H   r   E  k  n  L  rnn norm kp pad ties */
        {"gru cell, 3 layers",     8,  4,  4, 2, 5, 3, 0, -1, 0, 0, 0},
        {"gru cell, no renorm",   16,  8,  8, 2, 7, 3, 0,  0, 0, 0, 0},
        {"rnn cell",              12,  6,  6, 3, 3, 3, 1,  1, 0, 0, 0},
        {"top-1, one token",       5,  3,  3, 1, 1, 2, 0, -1, 0, 0, 0},
        {"top_k param, padded",   32, 16, 16, 4, 9, 4, 1, -1, 1, 3, 0},
        {"equal expert rows",     10,  5,  6, 3, 8, 2, 0,  1, 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_gru_case(ops, &cases[i], "model.rnn_router.");
    test_gru_case(ops, &cases[0], "model.shared_cell.");  // global_prefix
    test_gru_bad_inputs(ops);
}

void test_gru_concurrency(const moert_router_ops *ops) {
    store_clear();
    const gru_case gc = {"race", 12, 8, 8, 2, 24, 1, 0, -1, 0, 0, 0};
    gru_make_weights(&gc, "model.rnn_router.");
    moert_layer_info layer = make_layer(0, 12, 8, 2, 100);
    moert_router_caps caps;
    void *inst = NULL;
    fake_param none[1] = {NUM("unused", 0)};
    if (create_router(ops, "model.layers.0.mlp.", none, 0, &layer, &caps, &inst) == MOERT_OK) {
        race("gru", ops, inst, 24, 12, 8, caps.max_experts_per_token, 8);
        ops->destroy(inst);
    } else {
        check(0, "gru: concurrent route() on one instance gives identical results", "create failed: %s", last_error);
    }
    store_clear();
}
