/* CPCRE2: the 8-bit (UTF-8) API of the system PCRE2 (Debian libpcre2-dev), for the split regexes of tokenizers. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
