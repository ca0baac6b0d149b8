/* main.c — unit tests of the gru, hash and comet router plugins through the plugin ABI, without libmoert. */
/*
** Usage: test_plugins PLUGIN.so...   (built by Tests/c/run_plugin_tests.sh)
**
** Each library is dlopen()ed and initialised with the fake host table of fake_host.c. Outputs of route() are
** compared with references written from the formulas of ALGORITHMS.md (§2 RMoE, §3.1 COMET, §4 Hash layers):
** per-token loops in double precision, no BLAS. Expert ids must be equal; weights, logits and states must agree
** within TOL = 1e-5 (relative to max(1, |reference|)): float32 evaluation of the same few dot products, softmax and
** tanh/sigmoid stays a few ulps of 1e-7 away from double, so 1e-5 leaves two orders of margin without hiding an
** error in the math. Malformed inputs must make create() fail with a message set through set_error, without leaks.
** The last line printed is "N passed, M failed"; the exit status is non-zero when a check failed.
*/
#include "router_test.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PLUGIN.so...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) load_plugin(argv[i]);
    const moert_router_ops *gru = kind_named("gru"), *hash = kind_named("hash"), *comet = kind_named("comet");
    check(gru != NULL && hash != NULL && comet != NULL, "kinds gru, hash and comet are registered",
          "gru %s, hash %s, comet %s", gru ? "yes" : "no", hash ? "yes" : "no", comet ? "yes" : "no");

    if (gru != NULL) test_gru(gru);
    if (hash != NULL) test_hash(hash);
    if (comet != NULL) test_comet(comet);
    /* route() from several threads at once on one instance. */
    if (gru != NULL) test_gru_concurrency(gru);
    if (comet != NULL) test_comet_concurrency(comet);
    check(atomic_load(&live_allocations) == 0, "no plugin allocation outlives its instance", "%d live allocations",
          atomic_load(&live_allocations));
    return check_summary();
}
