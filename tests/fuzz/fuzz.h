/*
 * fuzz.h - what the libFuzzer harnesses in this directory share.
 *
 * Each harness is one LLVMFuzzerTestOneInput().  Built with clang and
 * -fsanitize=fuzzer (make fuzz) it is a coverage-guided fuzzer; built
 * with standalone.c instead it is a regression test that replays every
 * file of its corpus (tests/fuzz/corpus/<harness>/) under the sanitizers
 * of the normal build, so a crash once found stays fixed.
 *
 * A harness must not leak, block, touch the network or run commands:
 * the inputs are hostile by construction.
 */
#ifndef LM_FUZZ_H
#define LM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A memory file holding @data, positioned at its start: the stream
 * reader reads an fd.  One per process, reused. */
static inline int fz_memfd(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("fuzz-input", MFD_CLOEXEC)) < 0)
        abort();
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    return fd;
}

#define FZ_CHECK(cond)                                                    \
    do {                                                                  \
        if (!(cond))                                                      \
            fz_fail(#cond, __FILE__, __LINE__);                           \
    } while (0)

void fz_fail(const char *what, const char *file, int line)
    __attribute__((noreturn));

#endif
