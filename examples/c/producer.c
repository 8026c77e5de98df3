/* Producer: sends persistent messages to a queue kept in a data directory.
 *
 *   ./producer DIR [COUNT]      (then ./consumer DIR)
 *
 * The messages survive the producer's exit (and a crash of it): the consumer
 * opens the same directory later and finds them. Exits 0 on success. */
#include "libqueue.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(str) (const uint8_t *)(str), strlen(str)

static int fail(const char *what, lq_status s) {
    fprintf(stderr, "producer: %s: %s: %s\n", what, lq_status_str(s), lq_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [COUNT]\n", argv[0]);
        return 2;
    }
    long count = argc > 2 ? atol(argv[2]) : 1000;
    lq_broker_options *opts = NULL;
    lq_status s = lq_broker_options_new(&opts);
    if (s == LQ_OK) s = lq_broker_options_set_data_dir(opts, S(argv[1]));
    /* Group commit: every send returns once its record is on disk. */
    if (s == LQ_OK) s = lq_broker_options_set_sync_mode(opts, LQ_SYNC_INTERVAL, 10);
    if (s != LQ_OK) return fail("options", s);

    lq_broker *broker = NULL;
    s = lq_broker_open(opts, &broker);
    lq_broker_options_free(opts);
    if (s != LQ_OK) return fail("open", s);
    lq_recovery_report r;
    if (lq_broker_recovery_report(broker, &r) == LQ_OK)
        printf("producer: opened %s (%llu messages waiting from before)\n", argv[1],
               (unsigned long long)r.messages_recovered);

    lq_queue *q = NULL;
    s = lq_broker_queue(broker, S("orders"), &q);
    if (s != LQ_OK) return fail("queue", s);
    for (long i = 0; i < count; i++) {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"order\": %ld}", i);
        lq_message *m = NULL;
        s = lq_message_new((const uint8_t *)body, (size_t)n, &m);
        if (s == LQ_OK) s = lq_message_set_name(m, S("create_order"));
        if (s == LQ_OK) s = lq_message_set_persistent(m, true);
        if (s == LQ_OK) s = lq_queue_send(q, m, NULL); /* consumes m */
        else lq_message_free(m);
        if (s != LQ_OK) return fail("send", s);
    }
    s = lq_queue_flush(q); /* a durability barrier */
    if (s != LQ_OK) return fail("flush", s);
    lq_queue_stats st;
    lq_queue_get_stats(q, &st);
    printf("producer: sent %ld persistent messages; %llu ready in \"orders\"\n", count,
           (unsigned long long)st.ready);
    lq_queue_free(q);
    lq_broker_free(broker); /* closes the journal and releases the directory */
    return 0;
}
