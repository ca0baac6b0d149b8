/* CUtf8proc: Unicode normalization (NFC, NFKC) of the system utf8proc (Debian libutf8proc-dev), for tokenizers. */
#include <utf8proc.h>
