/* The header, the library and Cargo.toml agree on the version, and the
 * library has the bridges the header declares (LQ_HAVE_BRIDGE: `make lib`,
 * `make install` and the wheel build with the cargo feature `bridge`; a library
 * without it fails to link here).
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
#ifdef LQ_HAVE_BRIDGE
    lq_bridge_builder *b = NULL;
    if (lq_bridge_nats_new((const uint8_t *)"nats://127.0.0.1:4222", 21, &b) != LQ_OK || !b) {
        fprintf(stderr, "lq_bridge_nats_new failed: %s\n", lq_last_error_message());
        bad = 1;
    }
    lq_bridge_builder_free(b);
#else
    fprintf(stderr, "the header declares no bridges (LQ_HAVE_BRIDGE)\n");
    bad = 1;
#endif
    if (!bad) printf("libqueue %s: header, library and Cargo.toml agree; bridges built in\n", lib);
    return bad;
}
