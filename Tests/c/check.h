/* check.h — checks, their counts and the "N passed, M failed" summary, shared by the C test programs of Tests/c. */
/*
** Two ways to report a check, counted together:
**  - in groups: group_begin(name), then CHECK(cond, format, ...) any number of times, then group_end(), which prints
**    one line for the group, "ok    name (N checks)" or "FAIL  name (F of N checks failed)"; each failing check is
**    detailed above that line with its file and line;
**  - by name: check(ok, name, format, ...) prints one line per check, "ok    name" or "FAIL  name" with the detail
**    indented under it.
** check_summary() prints the last line of the program, "N passed, M failed", which the runners read, and returns
** the exit status.
*/
#ifndef MOERT_TESTS_CHECK_H
#define MOERT_TESTS_CHECK_H

#if defined(__GNUC__) || defined(__clang__)
#  define CHECK_PRINTF(format_index, first_arg) __attribute__((format(printf, format_index, first_arg)))
#else
#  define CHECK_PRINTF(format_index, first_arg)
#endif

/** Starts a group of checks; group_end() prints its one-line result. */
void group_begin(const char *name);

/** Prints the current group's result line. */
void group_end(void);

/** Records one check of the current group; a failure prints the formatted reason (indented, before the group's
    line). Returns `ok`. */
int check_at(int ok, const char *file, int line, const char *format, ...) CHECK_PRINTF(4, 5);

#define CHECK(cond, ...) check_at((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

/** Records one named check and prints its line; a failure prints the formatted detail under it. Returns `ok`. */
int check(int ok, const char *name, const char *format, ...) CHECK_PRINTF(3, 4);

/** A precondition of named checks: when it does not hold, records a failure as check() does; when it holds, records
    and prints nothing. Returns `ok`. */
int require(int ok, const char *name, const char *format, ...) CHECK_PRINTF(3, 4);

/** Makes every later failing check also print "(<label>: <note()>)", e.g. the library's last error. NULL: nothing. */
void check_note_failures(const char *label, const char *(*note)(void));

/** Prints "N passed, M failed" and returns the exit status of the program: 0 when nothing failed, 1 otherwise. */
int check_summary(void);

#endif /* MOERT_TESTS_CHECK_H */
