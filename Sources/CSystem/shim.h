/* CSystem: libc facilities Swift's Glibc module hides behind _GNU_SOURCE. */
#ifndef MOERT_CSYSTEM_SHIM_H
#define MOERT_CSYSTEM_SHIM_H

/* Layout of glibc's Dl_info. */
typedef struct csystem_dl_info {
    const char *dli_fname;
    void *dli_fbase;
    const char *dli_sname;
    void *dli_saddr;
} csystem_dl_info;

/* glibc's dladdr under another name, so it never clashes with a declaration from <dlfcn.h>. */
int csystem_dladdr(const void *address, csystem_dl_info *info) __asm__("dladdr");

#include <pthread.h>

/* glibc's pthread_getattr_np (the attributes of a running thread, its stack among them), likewise renamed. */
int csystem_pthread_getattr_np(pthread_t thread, pthread_attr_t *attributes) __asm__("pthread_getattr_np");

/* An address in the current frame on the thread's real stack (AddressSanitizer may move a Swift local to a "fake
   stack" on the heap, so the address of a local does not show how deep the stack is). */
static inline const void *csystem_stack_address(void) { return __builtin_frame_address(0); }

#endif
