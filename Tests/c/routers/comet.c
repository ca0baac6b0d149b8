/* comet.c — the comet router plugin (COMET, ALGORITHMS.md §3.1) against a reference written from the formulas. */
#define _POSIX_C_SOURCE 200809L

#include "router_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct comet_case {
    const char *label;
    int32_t H, E, k, n;
    double gamma;
    int pytorch;     /* variant "pytorch" (else "keras", passed explicitly when explicit_variant) */
    int node_bias;
    int permutation;
    int32_t max_experts;  /* 0: parameter absent */
    float node_scale;     /* scale of the node weights relative to gamma */
} comet_case;

/** Leaves of the subtree at `node` in the gate's order: [leaves of the left child, leaves of the right child]. */
static void ref_leaves(int32_t node, int32_t E, int32_t *out, int32_t *count) {
    if (node >= E - 1) {
        out[(*count)++] = node;
        return;
    }
    ref_leaves(2 * node + 1, E, out, count);
    ref_leaves(2 * node + 2, E, out, count);
}

static double ref_smooth_step(double u, double gamma) {
    if (u <= -gamma / 2) return 0;
    if (u >= gamma / 2) return 1;
    return -2 / (gamma * gamma * gamma) * u * u * u + 3 / (2 * gamma) * u + 0.5;
}

typedef struct comet_weights {
    const float *node_w, *node_b, *leaf_w, *leaf_b, *perm;
} comet_weights;

/** The recursion of COMETGate.call: a node passes P·q to its left child and P·(1-q) to its right child. */
static void ref_comet_walk(const comet_case *cc, const comet_weights *w, const float *x, int32_t node,
                           const double *P, double *leafP, int32_t *leaf) {
    const int32_t E = cc->E, k = cc->k, H = cc->H;
    if (node >= E - 1) {
        for (int32_t t = 0; t < k; t++) leafP[*leaf * k + t] = P[t];
        (*leaf)++;
        return;
    }
    double left[16], right[16];
    for (int32_t t = 0; t < k; t++) {
        double u = w->node_b != NULL ? w->node_b[node * k + t] : 0.0;
        for (int32_t c = 0; c < H; c++) u += (double)w->node_w[((size_t)node * k + t) * H + c] * x[c];
        double q = ref_smooth_step(u, cc->gamma);
        left[t] = P[t] * q;
        right[t] = P[t] * (1 - q);
    }
    ref_comet_walk(cc, w, x, 2 * node + 1, left, leafP, leaf);
    ref_comet_walk(cc, w, x, 2 * node + 2, right, leafP, leaf);
}

/** Reference COMET gate for one token; returns the count and fills ids/weights (largest first, capped). */
static int32_t ref_comet_token(const comet_case *cc, const comet_weights *w, const float *x, int32_t *ids,
                               double *weights) {
    const int32_t E = cc->E, k = cc->k, H = cc->H;
    double leafP[64 * 16], s[16][64], P[16], g[64];
    int masked[16][64];
    for (int32_t t = 0; t < 16; t++) P[t] = 1;  // the root: probability 1 in every tree
    int32_t leaf = 0;
    ref_comet_walk(cc, w, x, 0, P, leafP, &leaf);
    double m = -INFINITY;
    for (int32_t t = 0; t < k; t++) {
        for (int32_t j = 0; j < E; j++) {
            double p = leafP[j * k + t];
            masked[t][j] = cc->pytorch ? p < 1e-5 : p <= 0;
            double a = w->leaf_b[j * k + t];
            for (int32_t c = 0; c < H; c++) a += (double)w->leaf_w[((size_t)j * k + t) * H + c] * x[c];
            s[t][j] = a + log(p + (cc->pytorch ? 1e-6 : 1e-8));
            if (!masked[t][j] && s[t][j] > m) m = s[t][j];
        }
    }
    double sum = 0;
    for (int32_t t = 0; t < k; t++) {
        for (int32_t j = 0; j < E; j++) sum += masked[t][j] ? 0 : exp(s[t][j] - m);
    }
    for (int32_t e = 0; e < E; e++) g[e] = 0;
    for (int32_t t = 0; t < k; t++) {
        for (int32_t j = 0; j < E; j++) {
            double gtj = masked[t][j] ? 0 : exp(s[t][j] - m) / sum;
            for (int32_t e = 0; e < E; e++) {
                double pi = w->perm != NULL ? w->perm[((size_t)t * E + j) * E + e] : (j == e);
                g[e] += gtj * pi;
            }
        }
    }
    double total = 0;
    for (int32_t e = 0; e < E; e++) total += g[e];
    for (int32_t e = 0; e < E; e++) g[e] /= total;
    int32_t nonzero = 0;
    for (int32_t e = 0; e < E; e++) nonzero += g[e] > 0;
    int32_t cap = cc->max_experts > 0 && cc->max_experts < E ? cc->max_experts : E;
    int32_t count = ref_select(g, E, cap, 0.0, ids);
    double kept = 0;
    for (int32_t j = 0; j < count; j++) kept += g[ids[j]];
    for (int32_t j = 0; j < count; j++) weights[j] = nonzero > count ? g[ids[j]] / kept : g[ids[j]];
    return count;
}

/** Adds the COMET tensors of layer 2 to the store (k trees over E experts, hidden H). */
static comet_weights comet_make_weights(const comet_case *cc) {
    comet_weights w = {NULL, NULL, NULL, NULL, NULL};
    const int32_t E = cc->E, k = cc->k, H = cc->H;
    const float ns = (float)cc->gamma * cc->node_scale;
    if (E > 1) w.node_w = add_random("model.layers.2.mlp.router.node_weight", 3, E - 1, k, H, ns);
    if (E > 1 && cc->node_bias) w.node_b = add_random("model.layers.2.mlp.router.node_bias", 2, E - 1, k, 0, ns);
    w.leaf_w = add_random("model.layers.2.mlp.router.leaf_weight", 3, E, k, H, 1.0f);
    w.leaf_b = add_random("model.layers.2.mlp.router.leaf_bias", 2, E, k, 0, 0.5f);
    if (cc->permutation) {
        float *pi = (float *)add_tensor("model.layers.2.mlp.router.permutation", MOERT_TENSOR_F32, 3, k, E, E);
        for (int32_t t = 0; t < k; t++) {
            int32_t order[64];
            for (int32_t j = 0; j < E; j++) order[j] = j;
            for (int32_t j = E - 1; j > 0; j--) {  // Fisher-Yates
                int32_t o = irand(j + 1), tmp = order[j];
                order[j] = order[o];
                order[o] = tmp;
            }
            for (int32_t j = 0; j < E; j++) pi[((size_t)t * E + j) * E + order[j]] = 1.0f;
        }
        w.perm = pi;
    }
    return w;
}

static int comet_params(const comet_case *cc, fake_param *params) {
    int np = 0;
    params[np++] = NUM("gamma", cc->gamma);
    if (cc->pytorch) params[np++] = STR("variant", "pytorch");
    else if (cc->node_bias) params[np++] = STR("variant", "keras");  // explicit in some cases, default in others
    if (cc->max_experts > 0) params[np++] = NUM("max_experts", cc->max_experts);
    return np;
}

static void test_comet_case(const moert_router_ops *ops, const comet_case *cc) {
    char name[256], why[512] = "", why_w[512] = "";
    store_clear();
    comet_weights w = comet_make_weights(cc);
    const int32_t n = cc->n, H = cc->H, E = cc->E;
    fake_param params[4];
    int np = comet_params(cc, params);
    moert_layer_info layer = make_layer(2, H, E, cc->k, 100);
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, "model.layers.2.mlp.", params, np, &layer, &caps, &inst);
    int32_t want_cap = cc->max_experts > 0 && cc->max_experts < E ? cc->max_experts : E;
    snprintf(name, sizeof name, "comet %s: create succeeds, max_experts_per_token %d", cc->label, (int)want_cap);
    check(status == MOERT_OK && caps.max_experts_per_token == want_cap && caps.state_size == 0, name,
          "status %d (%s), caps %d", (int)status, last_error, (int)caps.max_experts_per_token);
    if (status != MOERT_OK) return;
    float *x = (float *)malloc(sizeof(float) * (size_t)(n * H));
    for (int32_t i = 0; i < n * H; i++) x[i] = urand(-1.0f, 1.0f);
    int32_t tokens[64] = {0}, pos[64] = {0}, prev[64] = {0};
    route_out ro;
    route_out_init(&ro, n, caps.max_experts_per_token, E);
    moert_router_input in = make_input(n, H, x, tokens, pos, prev, NULL, 0);
    status = ops->route(inst, &in, &ro.out);
    int ok_ids = status == MOERT_OK, ok_w = ok_ids, sparse_seen = 0, capped_seen = 0;
    if (!ok_ids) snprintf(why, sizeof why, "route failed: %.200s", last_error);
    for (int32_t t = 0; t < n && status == MOERT_OK; t++) {
        int32_t ids[64];
        double weights[64];
        int32_t count = ref_comet_token(cc, &w, x + t * H, ids, weights);
        sparse_seen |= count < E;
        capped_seen |= count == want_cap && want_cap < E;
        if (ro.counts[t] != count) {
            ok_ids = 0;
            snprintf(why, sizeof why, "token %d: count %d, want %d", (int)t, (int)ro.counts[t], (int)count);
            continue;
        }
        for (int32_t j = 0; j < count; j++) {
            if (ro.ids[t * ro.cap + j] != ids[j]) {
                ok_ids = 0;
                snprintf(why, sizeof why, "token %d rank %d: expert %d, want %d", (int)t, (int)j,
                         (int)ro.ids[t * ro.cap + j], (int)ids[j]);
            }
            if (!close_to(ro.weights[t * ro.cap + j], weights[j], TOL)) {
                ok_w = 0;
                snprintf(why_w, sizeof why_w, "token %d rank %d: weight %.8g, want %.8g", (int)t, (int)j,
                         ro.weights[t * ro.cap + j], weights[j]);
            }
        }
    }
    snprintf(name, sizeof name, "comet %s: expert ids and counts equal the reference%s", cc->label,
             sparse_seen ? " (some tokens sparse)" : "");
    check(ok_ids, name, "%s", why);
    snprintf(name, sizeof name, "comet %s: weights within 1e-5%s", cc->label, capped_seen ? " (cap reached)" : "");
    check(ok_w, name, "%s", ok_ids || why_w[0] != 0 ? why_w : why);
    int logits_untouched = 1;
    for (int32_t i = 0; i < n * E; i++) logits_untouched = logits_untouched && isnan(ro.logits[i]);
    snprintf(name, sizeof name, "comet %s: logits left untouched", cc->label);
    check(logits_untouched, name, "logits were written");
    route_out_free(&ro);
    free(x);
    ops->destroy(inst);
    store_clear();
}

/**
 * Hard paths through E = 6 (one tree, saturated nodes): the expert reached must be the leaf's position in
 * left-first depth-first order, 7, 8, 9, 10, 5, 6 for experts 0..5 (ALGORITHMS.md §3.1).
 */
static void test_comet_leaf_order(const moert_router_ops *ops) {
    static const int32_t doc_order[6] = {7, 8, 9, 10, 5, 6};
    int32_t order[6], count = 0;
    ref_leaves(0, 6, order, &count);
    check(count == 6 && memcmp(order, doc_order, sizeof order) == 0, "comet reference leaf order for E = 6",
          "got %d %d %d %d %d %d", (int)order[0], (int)order[1], (int)order[2], (int)order[3], (int)order[4],
          (int)order[5]);
    for (int32_t expert = 0; expert < 6; expert++) {
        store_clear();
        add_tensor("model.layers.2.mlp.router.node_weight", MOERT_TENSOR_F32, 3, 5, 1, 4);
        float *nb = (float *)add_tensor("model.layers.2.mlp.router.node_bias", MOERT_TENSOR_F32, 2, 5, 1, 0);
        add_random("model.layers.2.mlp.router.leaf_weight", 3, 6, 1, 4, 1.0f);
        add_random("model.layers.2.mlp.router.leaf_bias", 2, 6, 1, 0, 1.0f);
        // Walk up from the leaf, steering every ancestor towards it (q = 1 goes left).
        for (int32_t node = doc_order[expert]; node > 0; node = (node - 1) / 2) {
            int32_t parent = (node - 1) / 2;
            nb[parent] = node == 2 * parent + 1 ? 10.0f : -10.0f;
        }
        fake_param params[1] = {NUM("gamma", 1.0)};
        moert_layer_info layer = make_layer(2, 4, 6, 1, 100);
        moert_router_caps caps;
        void *inst = NULL;
        moert_status status = create_router(ops, "model.layers.2.mlp.", params, 1, &layer, &caps, &inst);
        int32_t got = -1;
        float weight = 0;
        int32_t got_count = -1;
        if (status == MOERT_OK) {
            float x[4] = {0.3f, -0.2f, 0.9f, 0.1f};
            int32_t tok[1] = {0};
            route_out ro;
            route_out_init(&ro, 1, caps.max_experts_per_token, 6);
            moert_router_input in = make_input(1, 4, x, tok, tok, tok, NULL, 0);
            if (ops->route(inst, &in, &ro.out) == MOERT_OK) {
                got_count = ro.counts[0];
                got = ro.ids[0];
                weight = ro.weights[0];
            }
            route_out_free(&ro);
            ops->destroy(inst);
        }
        char name[128];
        snprintf(name, sizeof name, "comet E = 6: the path to heap node %d gives expert %d alone", (int)doc_order[expert],
                 (int)expert);
        check(got_count == 1 && got == expert && weight == 1.0f, name, "count %d, expert %d, weight %g (%s)",
              (int)got_count, (int)got, weight, status == MOERT_OK ? "" : last_error);
    }
    store_clear();
}

/**
 * The variants differ on a leaf whose path probability is in (0, 1e-5). E = 8, one tree, γ = 1: nodes 0, 1 and 3
 * have S(u) ≈ 0.01 (u = -0.4415), the other nodes are saturated to the left, so expert 0 (node 7) gets P ≈ 1e-6,
 * expert 1 ≈ 1e-4, expert 2 ≈ 0.0099 and expert 4 ≈ 0.99. Expert 0's leaf bias 12 gives it a sizeable weight
 * under keras (kept: P > 0); pytorch masks it (P < 1e-5). Expert 1's bias 9 makes its weight depend visibly on
 * the log epsilon (1e-8 or 1e-6 next to P ≈ 1e-4). (A single q of 1e-6 would not do: the cubic cancels to
 * about 6e-8 absolute in float32, the precision of both references.)
 */
static void test_comet_variants(const moert_router_ops *ops) {
    for (int pytorch = 0; pytorch < 2; pytorch++) {
        store_clear();
        const comet_case cc = {pytorch ? "pytorch" : "keras", 3, 8, 1, 1, 1.0, pytorch, 1, 0, 0, 1.0f};
        comet_weights w = {NULL, NULL, NULL, NULL, NULL};
        w.node_w = (const float *)add_tensor("model.layers.2.mlp.router.node_weight", MOERT_TENSOR_F32, 3, 7, 1, 3);
        float *nb = (float *)add_tensor("model.layers.2.mlp.router.node_bias", MOERT_TENSOR_F32, 2, 7, 1, 0);
        w.node_b = nb;
        w.leaf_w = (const float *)add_tensor("model.layers.2.mlp.router.leaf_weight", MOERT_TENSOR_F32, 3, 8, 1, 3);
        float *lb = (float *)add_tensor("model.layers.2.mlp.router.leaf_bias", MOERT_TENSOR_F32, 2, 8, 1, 0);
        w.leaf_b = lb;
        for (int node = 0; node < 7; node++) nb[node] = node == 0 || node == 1 || node == 3 ? -0.4415f : 10.0f;
        lb[0] = 12.0f;
        lb[1] = 9.0f;  // expert 1 (P ≈ 1e-4) gets a large weight, so the log epsilon of the variant shows
        fake_param params[2] = {NUM("gamma", 1.0), STR("variant", pytorch ? "pytorch" : "keras")};
        moert_layer_info layer = make_layer(2, 3, 8, 1, 100);
        moert_router_caps caps;
        void *inst = NULL;
        moert_status status = create_router(ops, "model.layers.2.mlp.", params, 2, &layer, &caps, &inst);
        float x[3] = {0.1f, 0.2f, 0.3f};
        int32_t ids[8], got_count = -1, got_ids[8];
        double weights[8];
        float got_w[8];
        int32_t count = ref_comet_token(&cc, &w, x, ids, weights);
        if (status == MOERT_OK) {
            int32_t tok[1] = {0};
            route_out ro;
            route_out_init(&ro, 1, caps.max_experts_per_token, 8);
            moert_router_input in = make_input(1, 3, x, tok, tok, tok, NULL, 0);
            if (ops->route(inst, &in, &ro.out) == MOERT_OK) {
                got_count = ro.counts[0];
                for (int32_t j = 0; j < got_count && j < 8; j++) {
                    got_ids[j] = ro.ids[j];
                    got_w[j] = ro.weights[j];
                }
            }
            route_out_free(&ro);
            ops->destroy(inst);
        }
        int ok = got_count == count && count == (pytorch ? 3 : 4);
        char why[256] = "";
        for (int32_t j = 0; ok && j < count; j++) {
            ok = got_ids[j] == ids[j] && close_to(got_w[j], weights[j], TOL);
            if (!ok) {
                snprintf(why, sizeof why, "rank %d: expert %d weight %.8g, want %d weight %.8g", (int)j,
                         (int)got_ids[j], got_w[j], (int)ids[j], weights[j]);
            }
        }
        char name[160];
        snprintf(name, sizeof name, "comet %s variant: a leaf with 0 < P < 1e-5 is %s", cc.label,
                 pytorch ? "masked" : "kept");
        check(ok, name, "count %d (want %d and %d) %s", (int)got_count, (int)count, pytorch ? 3 : 4, why);
    }
    store_clear();
}

static void test_comet_bad_inputs(const moert_router_ops *ops) {
    const comet_case cc = {"bad", 6, 4, 2, 1, 1.0, 0, 1, 1, 0, 1.0f};
    const char *lp = "model.layers.2.mlp.";
    moert_layer_info layer = make_layer(2, 6, 4, 2, 100);
    fake_param gamma[1] = {NUM("gamma", 1.0)};

    store_clear();
    comet_make_weights(&cc);
    fake_param none[1] = {NUM("unused", 0)};
    expect_create_fails("comet rejects a missing gamma", ops, lp, none, 0, &layer, "gamma");
    fake_param g0[1] = {NUM("gamma", 0)};
    expect_create_fails("comet rejects gamma 0", ops, lp, g0, 1, &layer, "gamma");
    fake_param gneg[1] = {NUM("gamma", -1)};
    expect_create_fails("comet rejects gamma -1", ops, lp, gneg, 1, &layer, "gamma");
    fake_param gnan[1] = {NUM("gamma", NAN)};
    expect_create_fails("comet rejects gamma NaN", ops, lp, gnan, 1, &layer, "gamma");
    fake_param gstr[1] = {STR("gamma", "1.0")};
    expect_create_fails("comet rejects a string gamma", ops, lp, gstr, 1, &layer, "gamma");
    fake_param jax[2] = {NUM("gamma", 1.0), STR("variant", "jax")};
    expect_create_fails("comet rejects variant \"jax\"", ops, lp, jax, 2, &layer, "variant");
    fake_param m0[2] = {NUM("gamma", 1.0), NUM("max_experts", 0)};
    expect_create_fails("comet rejects max_experts 0", ops, lp, m0, 2, &layer, "max_experts");
    fake_param mfrac[2] = {NUM("gamma", 1.0), NUM("max_experts", 2.5)};
    expect_create_fails("comet rejects max_experts 2.5", ops, lp, mfrac, 2, &layer, "max_experts");
    moert_layer_info wrong_h = make_layer(2, 7, 4, 2, 100);
    expect_create_fails("comet rejects weights of another hidden size", ops, lp, gamma, 1, &wrong_h, "leaf_weight");
    moert_layer_info wrong_e = make_layer(2, 6, 5, 2, 100);
    expect_create_fails("comet rejects weights of another expert count", ops, lp, gamma, 1, &wrong_e, "leaf_weight");

    // One malformed tensor at a time.
    static const char *names[5] = {"router.node_weight", "router.node_bias", "router.leaf_weight", "router.leaf_bias",
                                   "router.permutation"};
    static const int32_t bad_dims[5][4] = {{3, 3, 3, 6}, {2, 3, 3, 0}, {3, 4, 2, 5}, {2, 4, 1, 0}, {3, 2, 4, 3}};
    for (int i = 0; i < 5; i++) {
        store_clear();
        comet_make_weights(&cc);
        char full[128], name[160];
        snprintf(full, sizeof full, "%s%s", lp, names[i]);
        remove_tensor(full);
        add_random(full, bad_dims[i][0], bad_dims[i][1], bad_dims[i][2], bad_dims[i][3], 1.0f);
        snprintf(name, sizeof name, "comet rejects %s of a wrong shape", names[i]);
        expect_create_fails(name, ops, lp, gamma, 1, &layer, names[i]);
        if (i == 1 || i == 4) continue;  // optional tensors: their absence is fine
        remove_tensor(full);
        snprintf(name, sizeof name, "comet rejects a missing %s", names[i]);
        expect_create_fails(name, ops, lp, gamma, 1, &layer, names[i]);
    }
    store_clear();
    comet_make_weights(&cc);
    fake_tensor *leaf = tensor_named("model.layers.2.mlp.router.leaf_weight");
    leaf->dtype = MOERT_TENSOR_I32;
    expect_create_fails("comet rejects an integer leaf_weight", ops, lp, gamma, 1, &layer, "leaf_weight");
    leaf->dtype = MOERT_TENSOR_F32;
    ((float *)leaf->data)[3] = INFINITY;
    expect_create_fails("comet rejects an infinite leaf_weight element", ops, lp, gamma, 1, &layer, "leaf_weight");
    ((float *)leaf->data)[3] = 0.5f;
    float *pi = (float *)tensor_named("model.layers.2.mlp.router.permutation")->data;
    float saved[4];
    memcpy(saved, pi + 4, sizeof saved);  // tree 0, row 1
    memcpy(pi + 4, pi, sizeof saved);     // row 1 = row 0: a column gets two ones
    expect_create_fails("comet rejects a permutation with a repeated column", ops, lp, gamma, 1, &layer, "permutation");
    memcpy(pi + 4, saved, sizeof saved);
    for (int e = 0; e < 4; e++) pi[4 + e] = pi[4 + e] == 1.0f ? 0.5f : pi[4 + e];
    expect_create_fails("comet rejects a permutation entry 0.5", ops, lp, gamma, 1, &layer, "permutation");
    memcpy(pi + 4, saved, sizeof saved);
    void *inst = NULL;
    moert_router_caps caps;
    moert_status status = create_router(ops, lp, gamma, 1, &layer, &caps, &inst);
    check(status == MOERT_OK, "comet accepts the repaired tensors", "%s", last_error);
    if (status == MOERT_OK) {
        float x[2 * 6] = {0};
        int32_t tok[2] = {0, 1};
        route_out ro;
        route_out_init(&ro, 2, caps.max_experts_per_token, 4);
        moert_router_input in = make_input(2, 5, x, tok, tok, tok, NULL, 0);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "comet route with the wrong hidden size fails with a message",
              "status %d", (int)status);
        x[7] = NAN;
        in = make_input(2, 6, x, tok, tok, tok, NULL, 0);
        error_calls = 0;
        status = ops->route(inst, &in, &ro.out);
        check(status != MOERT_OK && error_calls == 1, "comet route with a NaN input fails with a message", "status %d",
              (int)status);
        route_out_free(&ro);
        ops->destroy(inst);
    }
    store_clear();
    check(atomic_load(&live_allocations) == 0, "comet frees everything it allocates", "%d live allocations",
          atomic_load(&live_allocations));
}

void test_comet(const moert_router_ops *ops) {
    static const comet_case cases[] = {
        /* label                        H   E  k  n  gamma  pt  nb perm max  scale */
        {"E=4 k=2 keras",               8,  4, 2, 12, 1.0,  0, 1, 0, 0, 1.0f},
        {"E=6 k=2 keras permuted",      8,  6, 2, 12, 1.0,  0, 1, 1, 0, 1.0f},
        {"E=5 k=3 pytorch permuted cap 2", 10, 5, 3, 12, 2.0, 1, 0, 1, 2, 1.0f},
        {"E=8 k=1 pytorch cap 3",       6,  8, 1, 12, 0.5,  1, 0, 0, 3, 1.0f},
        {"E=3 k=2 wide gamma",          7,  3, 2,  6, 10.0, 0, 0, 0, 0, 0.05f},
        {"E=2 k=1 saturated cap 1",     9,  2, 1,  6, 0.01, 0, 1, 0, 1, 1.0f},
        {"E=7 k=2 saturated keras",     8,  7, 2, 12, 0.1,  0, 1, 1, 9, 10.0f},
        {"E=1",                         4,  1, 2,  3, 1.0,  0, 0, 0, 0, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_comet_case(ops, &cases[i]);
    test_comet_leaf_order(ops);
    test_comet_variants(ops);
    test_comet_bad_inputs(ops);
}

void test_comet_concurrency(const moert_router_ops *ops) {
    store_clear();
    const comet_case cc = {"race", 10, 6, 2, 24, 1.0, 0, 1, 1, 0, 1.0f};
    comet_make_weights(&cc);
    moert_layer_info layer = make_layer(2, 10, 6, 2, 100);
    moert_router_caps caps;
    void *inst = NULL;
    fake_param gamma[1] = {NUM("gamma", 1.0)};
    if (create_router(ops, "model.layers.2.mlp.", gamma, 1, &layer, &caps, &inst) == MOERT_OK) {
        race("comet", ops, inst, 24, 10, 6, caps.max_experts_per_token, 0);
        ops->destroy(inst);
    } else {
        check(0, "comet: concurrent route() on one instance gives identical results", "create failed: %s", last_error);
    }
    store_clear();
}
