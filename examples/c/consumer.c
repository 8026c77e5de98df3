/* Consumer: opens the data directory the producer wrote, and receives, checks
 * and acks every message (at-least-once: an unacked message would come back
 * after a crash).
 *
 *   ./consumer DIR [EXPECTED]
 *
 * Exits 0 if it received EXPECTED messages (when given). */
#include "libqueue.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(str) (const uint8_t *)(str), strlen(str)

static int fail(const char *what, lq_status s) {
    fprintf(stderr, "consumer: %s: %s: %s\n", what, lq_status_str(s), lq_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [EXPECTED]\n", argv[0]);
        return 2;
    }
    long expected = argc > 2 ? atol(argv[2]) : -1;
    lq_broker_options *opts = NULL;
    lq_status s = lq_broker_options_new(&opts);
    if (s == LQ_OK) s = lq_broker_options_set_data_dir(opts, S(argv[1]));
    if (s != LQ_OK) return fail("options", s);
    lq_broker *broker = NULL;
    s = lq_broker_open(opts, &broker);
    lq_broker_options_free(opts);
    if (s != LQ_OK) return fail("open", s);
    lq_recovery_report r;
    if (lq_broker_recovery_report(broker, &r) == LQ_OK)
        printf("consumer: recovered %llu messages (%llu bytes of damage cut)\n",
               (unsigned long long)r.messages_recovered, (unsigned long long)r.bytes_cut);

    lq_queue *q = NULL;
    s = lq_broker_queue(broker, S("orders"), &q);
    if (s != LQ_OK) return fail("queue", s);
    long got = 0;
    for (;;) {
        /* Batches of up to 64, waiting at most 100 ms for the first. */
        lq_delivery *ds[64];
        size_t n = 0;
        s = lq_queue_receive_batch(q, 64, 100, ds, &n);
        if (s == LQ_TIMEOUT) break; /* drained */
        if (s != LQ_OK) return fail("receive", s);
        for (size_t i = 0; i < n; i++) {
            const uint8_t *body;
            size_t len;
            /* Zero-copy: `body` is valid until the ack below. */
            if (lq_delivery_body(ds[i], &body, &len) != LQ_OK || len < 10 ||
                memcmp(body, "{\"order\": ", 10) != 0)
                return fail("body", LQ_INVALID_STATE);
            s = lq_delivery_ack(ds[i]);
            lq_delivery_free(ds[i]);
            if (s != LQ_OK) return fail("ack", s);
            got++;
        }
    }
    printf("consumer: received and acked %ld messages\n", got);
    lq_queue_free(q);
    lq_broker_free(broker);
    if (expected >= 0 && got != expected) {
        fprintf(stderr, "consumer: expected %ld\n", expected);
        return 1;
    }
    return 0;
}
