/* plugin_load_loop.c: loads every shipped plugin, then unloads them all with moert_shutdown(), many times over. */
/*
** Usage: plugin_load_loop CYCLES PLUGIN...     (bare names such as gru, or paths)
**
** Each cycle loads each plugin (its kinds must appear in the registry), then calls moert_shutdown() (only the
** built-in kinds may remain). Run under valgrind (Tests/c/run_valgrind_tests.sh) it shows that loading and
** unloading leaks nothing moert owns and reads nothing it should not. Prints the resident set size after the first
** and the last cycle, then "N passed, M failed".
*/
#define _POSIX_C_SOURCE 200809L

#include <moert.h>
#include <moert_plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Resident set size of this process in KiB, from /proc/self/statm (0 when unavailable). */
static long resident_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CYCLES PLUGIN...\n", argv[0]);
        return 2;
    }
    int cycles = atoi(argv[1]), passed = 0, failed = 0;
    long first_rss = 0;
    /* Before any plugin: the built-in kinds alone. */
    int32_t builtin_routers = moert_kind_count(MOERT_KIND_ROUTER), builtin_experts = moert_kind_count(MOERT_KIND_EXPERT);
    for (int c = 0; c < cycles; c++) {
        int ok = 1;
        for (int i = 2; i < argc; i++) {
            int32_t routers = moert_kind_count(MOERT_KIND_ROUTER), experts = moert_kind_count(MOERT_KIND_EXPERT);
            if (moert_plugin_load(argv[i]) != MOERT_OK) {
                printf("cycle %d: loading %s failed: %s\n", c, argv[i], moert_last_error());
                ok = 0;
            } else if (moert_kind_count(MOERT_KIND_ROUTER) + moert_kind_count(MOERT_KIND_EXPERT) <= routers + experts) {
                printf("cycle %d: %s registered no kind\n", c, argv[i]);
                ok = 0;
            }
        }
        if (moert_shutdown() != MOERT_OK) {
            printf("cycle %d: moert_shutdown failed: %s\n", c, moert_last_error());
            ok = 0;
        }
        if (moert_kind_count(MOERT_KIND_ROUTER) != builtin_routers || moert_kind_count(MOERT_KIND_EXPERT) != builtin_experts) {
            printf("cycle %d: kinds left after shutdown\n", c);
            ok = 0;
        }
        if (ok) passed++; else failed++;
        if (c == 0) first_rss = resident_kib();
    }
    printf("resident set: %ld KiB after cycle 1, %ld KiB after cycle %d\n", first_rss, resident_kib(), cycles);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
