/* The header, the library and Cargo.toml agree on the version.
 * Built by `make test-c` with -DEXPECTED_VERSION="x.y.z" read from Cargo.toml. */
#include "libqueue.h"
#include <stdio.h>
#include <string.h>

#define STR2(x) #x
#define STR(x) STR2(x)

int main(void) {
    const char *lib = lq_version();
    const char *macros = STR(LQ_VERSION_MAJOR) "." STR(LQ_VERSION_MINOR) "." STR(LQ_VERSION_PATCH);
    int bad = 0;
    if (strcmp(lib, EXPECTED_VERSION) != 0) {
        fprintf(stderr, "lq_version() = %s, Cargo.toml says %s\n", lib, EXPECTED_VERSION);
        bad = 1;
    }
    if (strcmp(macros, EXPECTED_VERSION) != 0 || strcmp(LQ_VERSION_STRING, EXPECTED_VERSION) != 0) {
        fprintf(stderr, "header macros say %s / %s, Cargo.toml says %s\n", macros, LQ_VERSION_STRING,
                EXPECTED_VERSION);
        bad = 1;
    }
    if (!bad) printf("libqueue %s: header, library and Cargo.toml agree\n", lib);
    return bad;
}
