/* A tiny assertion kit for the C tests: each failure prints its line and the
 * library's status name and last error message, then exits 1. */
#ifndef LQ_TEST_CHECK_H
#define LQ_TEST_CHECK_H

#include "libqueue.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A C string as (const uint8_t *, size_t). */
#define S(str) (const uint8_t *)(str), strlen(str)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* The call must return `want`; a failure status must come with a message. */
#define EXPECT(want, call)                                                                   \
    do {                                                                                     \
        lq_status got_ = (call);                                                             \
        if (got_ != (want)) {                                                                \
            fprintf(stderr, "%s:%d: %s\n  returned %s (%s), expected %s\n", __FILE__,        \
                    __LINE__, #call, lq_status_str(got_), lq_last_error_message(),           \
                    lq_status_str(want));                                                    \
            exit(1);                                                                         \
        }                                                                                    \
        if (got_ != LQ_OK && lq_last_error_message()[0] == '\0') {                           \
            fprintf(stderr, "%s:%d: %s: no error message\n", __FILE__, __LINE__, #call);     \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define OK(call) EXPECT(LQ_OK, call)

/* As EXPECT, and the last error message contains `part`. */
#define EXPECT_MSG(want, part, call)                                                         \
    do {                                                                                     \
        EXPECT(want, call);                                                                  \
        if (!strstr(lq_last_error_message(), (part))) {                                      \
            fprintf(stderr, "%s:%d: %s: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,  \
                    #call, lq_last_error_message(), (part));                                 \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* A (ptr, len) pair equals a C string. */
static inline int eq(const uint8_t *p, size_t n, const char *s) {
    return n == strlen(s) && (n == 0 || memcmp(p, s, n) == 0);
}

#endif
