/* CJemalloc: jemalloc, linked by the moert executable only (never by libmoert.so; see ExpertArena.swift). */
#include <jemalloc/jemalloc.h>
