/* check.c — the counters and printing behind check.h. */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>

static int n_passed, n_failed;           /* over the whole run */
static int group_checks, group_failures; /* within the current group */
static const char *group_name;
static const char *failure_label;
static const char *(*failure_note)(void);

void group_begin(const char *name) {
    group_name = name;
    group_checks = 0;
    group_failures = 0;
}

void group_end(void) {
    if (group_failures == 0) {
        printf("ok    %s (%d checks)\n", group_name, group_checks);
    } else {
        printf("FAIL  %s (%d of %d checks failed)\n", group_name, group_failures, group_checks);
    }
    fflush(stdout);
}

/** Prints one failure's detail, indented under or above the line that names it, with the note if one is set. */
static void print_detail(const char *prefix, const char *format, va_list args) {
    printf("      %s", prefix);
    vprintf(format, args);
    if (failure_note != NULL) printf(" (%s: %s)", failure_label, failure_note());
    printf("\n");
}

int check_at(int ok, const char *file, int line, const char *format, ...) {
    char where[512];
    group_checks++;
    if (ok) {
        n_passed++;
        return 1;
    }
    n_failed++;
    group_failures++;
    snprintf(where, sizeof where, "%s:%d: ", file, line);
    va_list args;
    va_start(args, format);
    print_detail(where, format, args);
    va_end(args);
    return 0;
}

/** Counts and prints a failed named check. */
static void named_failure(const char *name, const char *format, va_list args) {
    n_failed++;
    printf("FAIL  %s\n", name);
    print_detail("", format, args);
    fflush(stdout);
}

int check(int ok, const char *name, const char *format, ...) {
    if (ok) {
        n_passed++;
        printf("ok    %s\n", name);
        fflush(stdout);
        return 1;
    }
    va_list args;
    va_start(args, format);
    named_failure(name, format, args);
    va_end(args);
    return 0;
}

int require(int ok, const char *name, const char *format, ...) {
    if (ok) return 1;
    va_list args;
    va_start(args, format);
    named_failure(name, format, args);
    va_end(args);
    return 0;
}

void check_note_failures(const char *label, const char *(*note)(void)) {
    failure_label = label;
    failure_note = note;
}

int check_summary(void) {
    printf("%d passed, %d failed\n", n_passed, n_failed);
    fflush(stdout);
    return n_failed == 0 ? 0 : 1;
}
