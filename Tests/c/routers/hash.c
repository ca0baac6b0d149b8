/* hash.c — the hash router plugin (Hash layers, ALGORITHMS.md §4) against a reference written from the formulas. */
#define _POSIX_C_SOURCE 200809L

#include "router_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/** SplitMix64 (Vigna, splitmix64.c): next() of a generator whose state is `seed`. */
static uint64_t ref_splitmix64(uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/**
 * Routes `n` random token ids through a fresh hash instance and compares with the table (or the fallback):
 * experts in first-occurrence order, weight = multiplicity / c.
 */
static void hash_compare(const char *label, const moert_router_ops *ops, const fake_param *params, int np,
                         int32_t vocab, int32_t E, const int32_t *table, int32_t c, int32_t want_cap) {
    char name[256], why[256] = "";
    moert_layer_info layer = make_layer(1, 16, E, 2, vocab);
    moert_router_caps caps;
    void *inst = NULL;
    moert_status status = create_router(ops, "model.layers.1.mlp.", params, np, &layer, &caps, &inst);
    snprintf(name, sizeof name, "hash %s: create succeeds, max_experts_per_token %d", label, (int)want_cap);
    check(status == MOERT_OK && caps.max_experts_per_token == want_cap && caps.state_size == 0, name,
          "status %d (%s), caps %d/%d", (int)status, last_error, (int)caps.max_experts_per_token, (int)caps.state_size);
    if (status != MOERT_OK) return;
    const int32_t n = 40;
    int32_t tokens[40], pos[40], prev[40];
    for (int32_t t = 0; t < n; t++) {
        tokens[t] = t < 2 ? (t == 0 ? 0 : vocab - 1) : irand(vocab);
        pos[t] = t;
        prev[t] = t == 0 ? -1 : tokens[t - 1];
    }
    float x[40 * 16];
    for (int i = 0; i < n * 16; i++) x[i] = urand(-1, 1);
    route_out ro;
    route_out_init(&ro, n, caps.max_experts_per_token, E);
    moert_router_input in = make_input(n, 16, x, tokens, pos, prev, NULL, 0);
    status = ops->route(inst, &in, &ro.out);
    int ok = status == MOERT_OK;
    if (!ok) snprintf(why, sizeof why, "route failed: %.200s", last_error);
    for (int32_t t = 0; t < n && ok; t++) {
        int32_t ids[64], count = 0;
        double w[64];
        if (table == NULL) {
            ids[0] = (int32_t)(ref_splitmix64((uint64_t)tokens[t]) % (uint64_t)E);
            w[0] = 1;
            count = 1;
        } else {
            for (int32_t j = 0; j < c; j++) {
                int32_t e = table[tokens[t] * c + j], i = 0;
                while (i < count && ids[i] != e) i++;
                if (i == count) {
                    ids[count] = e;
                    w[count++] = 0;
                }
                w[i] += 1.0 / c;
            }
        }
        if (ro.counts[t] != count) {
            ok = 0;
            snprintf(why, sizeof why, "token %d (id %d): count %d, want %d", (int)t, (int)tokens[t], (int)ro.counts[t],
                     (int)count);
        }
        for (int32_t j = 0; j < count && ok; j++) {
            if (ro.ids[t * ro.cap + j] != ids[j] || !close_to(ro.weights[t * ro.cap + j], w[j], 1e-6)) {
                ok = 0;
                snprintf(why, sizeof why, "token %d (id %d) entry %d: expert %d weight %.8g, want %d weight %.8g",
                         (int)t, (int)tokens[t], (int)j, (int)ro.ids[t * ro.cap + j], ro.weights[t * ro.cap + j],
                         (int)ids[j], w[j]);
            }
        }
    }
    int logits_untouched = 1;
    for (int32_t i = 0; i < n * E; i++) logits_untouched = logits_untouched && isnan(ro.logits[i]);
    snprintf(name, sizeof name, "hash %s: experts and weights equal the table", label);
    check(ok, name, "%s", why);
    snprintf(name, sizeof name, "hash %s: logits left untouched", label);
    check(logits_untouched, name, "logits were written");

    // An id outside the vocabulary is refused by route() with a message.
    tokens[0] = vocab;
    in = make_input(1, 16, x, tokens, pos, prev, NULL, 0);
    error_calls = 0;
    status = ops->route(inst, &in, &ro.out);
    snprintf(name, sizeof name, "hash %s: route refuses token id %d = vocab_size", label, (int)vocab);
    check(status != MOERT_OK && error_calls == 1, name, "status %d", (int)status);
    tokens[0] = -1;
    error_calls = 0;
    status = ops->route(inst, &in, &ro.out);
    snprintf(name, sizeof name, "hash %s: route refuses token id -1", label);
    check(status != MOERT_OK && error_calls == 1, name, "status %d", (int)status);
    route_out_free(&ro);
    ops->destroy(inst);
}

void test_hash(const moert_router_ops *ops) {
    const int32_t vocab = 50;
    fake_param none[1] = {NUM("unused", 0)};

    // The reference hash is SplitMix64: its first output from seed 0 is 0xE220A8397B1DCDAF.
    check(ref_splitmix64(0) == 0xE220A8397B1DCDAFull, "hash reference splitmix64(0) = 0xE220A8397B1DCDAF", "got %llx",
          (unsigned long long)ref_splitmix64(0));

    // [vocab] table, one expert with weight 1.
    store_clear();
    int32_t *t1 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    for (int32_t i = 0; i < vocab; i++) t1[i] = irand(8);
    hash_compare("[vocab] table", ops, none, 0, vocab, 8, t1, 1, 1);

    // [vocab, 3] table with repeated experts in some rows.
    store_clear();
    int32_t *t3 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 2, vocab, 3, 0);
    for (int32_t i = 0; i < vocab * 3; i++) t3[i] = irand(6);
    t3[0] = t3[1] = t3[2] = 4;                         // id 0: one expert, weight 1
    t3[3 * 5 + 0] = 2, t3[3 * 5 + 1] = 5, t3[3 * 5 + 2] = 2;  // id 5: expert 2 twice
    hash_compare("[vocab, 3] table", ops, none, 0, vocab, 6, t3, 3, 3);

    // [vocab, 4] table over 3 experts: at most 3 distinct per row, so the capacity is min(c, E) = 3.
    store_clear();
    int32_t *t4 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 2, vocab, 4, 0);
    for (int32_t i = 0; i < vocab * 4; i++) t4[i] = irand(3);
    hash_compare("[vocab, 4] table over 3 experts", ops, none, 0, vocab, 3, t4, 4, 3);

    // A table under another name, chosen by the `table` parameter.
    store_clear();
    int32_t *tn = (int32_t *)add_tensor("model.layers.1.mlp.my_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    for (int32_t i = 0; i < vocab; i++) tn[i] = irand(5);
    fake_param named[1] = {STR("table", "my_table")};
    hash_compare("table parameter", ops, named, 1, vocab, 5, tn, 1, 1);

    // The fallback hash when no table exists; a table, when present, wins over the fallback.
    store_clear();
    fake_param fallback[1] = {STR("fallback", "splitmix64")};
    hash_compare("splitmix64 fallback", ops, fallback, 1, vocab, 7, NULL, 1, 1);
    int32_t *tf = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    for (int32_t i = 0; i < vocab; i++) tf[i] = irand(7);
    hash_compare("table wins over fallback", ops, fallback, 1, vocab, 7, tf, 1, 1);

    // Bad inputs.
    moert_layer_info layer = make_layer(1, 16, 8, 2, vocab);
    const char *lp = "model.layers.1.mlp.";
    store_clear();
    expect_create_fails("hash rejects a missing table without fallback", ops, lp, none, 0, &layer, "hash_table");
    int32_t *bad = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    bad[17] = 8;
    expect_create_fails("hash rejects a table entry = E", ops, lp, none, 0, &layer, "[17]");
    bad[17] = -1;
    expect_create_fails("hash rejects a table entry -1", ops, lp, none, 0, &layer, "[17]");
    store_clear();
    int32_t *bad2 = (int32_t *)add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 2, vocab, 2, 0);
    bad2[2 * 9 + 1] = 100;
    expect_create_fails("hash rejects a [vocab, c] entry out of range", ops, lp, none, 0, &layer, "[9, 1]");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab + 1, 0, 0);
    expect_create_fails("hash rejects a table of vocab_size + 1 rows", ops, lp, none, 0, &layer, "hash_table");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 3, vocab, 2, 2);
    expect_create_fails("hash rejects a 3-D table", ops, lp, none, 0, &layer, "hash_table");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_F32, 1, vocab, 0, 0);
    expect_create_fails("hash rejects a float table", ops, lp, none, 0, &layer, "I32");
    store_clear();
    add_tensor("model.layers.1.mlp.router.hash_table", MOERT_TENSOR_I32, 1, vocab, 0, 0);
    fake_param murmur[1] = {STR("fallback", "murmur3")};
    expect_create_fails("hash rejects fallback \"murmur3\"", ops, lp, murmur, 1, &layer, "fallback");
    fake_param table_number[1] = {NUM("table", 3)};
    expect_create_fails("hash rejects a numeric table parameter", ops, lp, table_number, 1, &layer, "table");
    store_clear();
    check(atomic_load(&live_allocations) == 0, "hash frees everything it allocates", "%d live allocations",
          atomic_load(&live_allocations));
}
