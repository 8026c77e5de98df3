/* The C ABI's whole surface, used as a host would: brokers, namespaces, queues
 * and their options, messages, receive in every flavor, settle, peek, cancel,
 * purge, stats, topics, the pool with C callbacks, RPC, the pollable fd, the
 * journal and its recovery report, closing. Built and run by `make test-c`
 * (and under ASan/UBSan and valgrind). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static lq_message *msg(const char *body) {
    lq_message *m = NULL;
    OK(lq_message_new(S(body), &m));
    return m;
}

static void test_status_names(void) {
    CHECK(strcmp(lq_status_str(LQ_OK), "LQ_OK") == 0);
    CHECK(strcmp(lq_status_str(LQ_QUOTA_EXCEEDED), "LQ_QUOTA_EXCEEDED") == 0);
    CHECK(strcmp(lq_status_str(LQ_PANIC), "LQ_PANIC") == 0);
    CHECK(strcmp(lq_status_str(12345), "LQ_UNKNOWN") == 0);
    CHECK(strcmp(lq_status_str(-1), "LQ_UNKNOWN") == 0);
    /* Pinned numbers. */
    CHECK(LQ_OK == 0 && LQ_EMPTY == 1 && LQ_TIMEOUT == 2 && LQ_FULL == 3 && LQ_CLOSED == 4);
    CHECK(LQ_INVALID_ARGUMENT == 100 && LQ_NULL_POINTER == 103 && LQ_PANIC == 108);
}

static void test_send_receive(lq_broker *b) {
    lq_queue *q = NULL;
    OK(lq_broker_queue(b, S("jobs"), &q));
    const uint8_t *p;
    size_t n;
    OK(lq_queue_name(q, &p, &n));
    CHECK(eq(p, n, "jobs"));

    uint64_t id = 0;
    OK(lq_queue_send_bytes(q, S("hello"), &id));
    lq_delivery *d = NULL;
    OK(lq_queue_try_receive(q, &d));
    uint64_t got = 99;
    OK(lq_delivery_id(d, &got));
    CHECK(got == id);
    OK(lq_delivery_body(d, &p, &n));
    CHECK(eq(p, n, "hello"));
    /* Zero-copy: the same pointer every time. */
    const uint8_t *p2;
    OK(lq_delivery_body(d, &p2, &n));
    CHECK(p2 == p);
    uint32_t count = 0;
    OK(lq_delivery_count(d, &count));
    CHECK(count == 1);
    EXPECT(LQ_NOT_FOUND, lq_delivery_name(d, &p, &n));
    OK(lq_delivery_ack(d));
    /* Settled: a second ack, the body, a nack are refused; the id stays. */
    EXPECT_MSG(LQ_INVALID_STATE, "acked", lq_delivery_ack(d));
    EXPECT(LQ_INVALID_STATE, lq_delivery_nack(d));
    EXPECT(LQ_INVALID_STATE, lq_delivery_body(d, &p, &n));
    OK(lq_delivery_id(d, &got));
    CHECK(got == id);
    lq_delivery_free(d);

    EXPECT_MSG(LQ_EMPTY, "no message", lq_queue_try_receive(q, &d));
    EXPECT(LQ_TIMEOUT, lq_queue_receive_timeout(q, 20, &d));
    EXPECT(LQ_EMPTY, lq_queue_receive_timeout(q, 0, &d));

    lq_queue_stats st;
    OK(lq_queue_get_stats(q, &st));
    CHECK(st.sent == 1 && st.acked == 1 && st.ready == 0 && st.received == 1);

    /* Blocking receive of a message already there. */
    OK(lq_queue_send_bytes(q, NULL, 0, NULL));
    OK(lq_queue_receive(q, &d));
    OK(lq_delivery_body(d, &p, &n));
    CHECK(n == 0 && p != NULL);
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);
    lq_queue_free(q);
}

static void test_message_fields(lq_broker *b) {
    lq_queue *q = NULL;
    OK(lq_broker_queue(b, S("fields"), &q));
    lq_message *m = msg("payload");
    OK(lq_message_set_name(m, S("create_member")));
    OK(lq_message_set_correlation_id(m, S("corr-1")));
    OK(lq_message_set_header(m, S("execution_id"), S("e-42")));
    OK(lq_message_set_header(m, S("bin"), (const uint8_t *)"\0\1\2", 3));
    OK(lq_message_set_priority(m, 7));
    OK(lq_message_set_ttl_ms(m, 60000));
    OK(lq_message_set_persistent(m, false));
    uint64_t size = 0;
    OK(lq_message_size(m, &size));
    CHECK(size == 7 + 13 + 6 + (12 + 4) + (3 + 3));
    OK(lq_queue_send(q, m, NULL));

    lq_delivery *d = NULL;
    OK(lq_queue_try_receive(q, &d));
    const uint8_t *p, *v;
    size_t n, vn;
    OK(lq_delivery_name(d, &p, &n));
    CHECK(eq(p, n, "create_member"));
    OK(lq_delivery_correlation_id(d, &p, &n));
    CHECK(eq(p, n, "corr-1"));
    OK(lq_delivery_header(d, S("execution_id"), &p, &n));
    CHECK(eq(p, n, "e-42"));
    OK(lq_delivery_header(d, S("bin"), &p, &n));
    CHECK(n == 3 && p[0] == 0 && p[2] == 2);
    EXPECT_MSG(LQ_NOT_FOUND, "nope", lq_delivery_header(d, S("nope"), &p, &n));
    size_t hc = 0;
    OK(lq_delivery_header_count(d, &hc));
    CHECK(hc == 2);
    OK(lq_delivery_header_at(d, 0, &p, &n, &v, &vn)); /* sorted: "bin" first */
    CHECK(eq(p, n, "bin") && vn == 3);
    OK(lq_delivery_header_at(d, 1, &p, &n, &v, &vn));
    CHECK(eq(p, n, "execution_id") && eq(v, vn, "e-42"));
    EXPECT(LQ_NOT_FOUND, lq_delivery_header_at(d, 2, &p, &n, &v, &vn));
    uint8_t prio = 0;
    OK(lq_delivery_priority(d, &prio));
    CHECK(prio == 7);
    bool persistent = true;
    OK(lq_delivery_is_persistent(d, &persistent));
    CHECK(!persistent);
    uint64_t exp = 0;
    OK(lq_delivery_expires_at(d, &exp));
    CHECK(exp > 0);
    OK(lq_delivery_extend(d, 0));
    OK(lq_delivery_extend(d, 5000));
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);

    /* Priority order: 9 before 1. */
    m = msg("low");
    OK(lq_message_set_priority(m, 1));
    OK(lq_queue_send(q, m, NULL));
    m = msg("high");
    OK(lq_message_set_priority(m, 9));
    OK(lq_queue_send(q, m, NULL));
    OK(lq_queue_try_receive(q, &d));
    OK(lq_delivery_body(d, &p, &n));
    CHECK(eq(p, n, "high"));
    EXPECT(LQ_NOT_FOUND, lq_delivery_expires_at(d, &exp));
    lq_delivery_free(d); /* unsettled: redelivered after its lease */
    OK(lq_queue_try_receive(q, &d));
    OK(lq_delivery_body(d, &p, &n));
    CHECK(eq(p, n, "low"));
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);

    /* Delay. */
    m = msg("later");
    OK(lq_message_set_delay_ms(m, 30));
    OK(lq_queue_send(q, m, NULL));
    EXPECT(LQ_EMPTY, lq_queue_try_receive(q, &d));
    lq_queue_stats st;
    OK(lq_queue_get_stats(q, &st));
    CHECK(st.delayed == 1 && st.leased == 1);
    OK(lq_queue_receive_timeout(q, 5000, &d));
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);
    lq_queue_free(q);
}

static void test_batch_peek_cancel(lq_broker *b) {
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("batching"), &ns));
    lq_queue *q = NULL;
    OK(lq_namespace_queue(ns, S("work"), &q));
    lq_message *ms[3] = {msg("a"), msg("b"), msg("c")};
    uint64_t ids[3] = {0, 0, 0};
    OK(lq_queue_send_batch(q, ms, 3, ids));
    CHECK(ids[0] < ids[1] && ids[1] < ids[2]);

    lq_delivery *peeked[8];
    size_t n = 0;
    OK(lq_queue_peek(q, 8, peeked, &n));
    CHECK(n == 3);
    const uint8_t *p;
    size_t len;
    OK(lq_delivery_body(peeked[0], &p, &len));
    CHECK(eq(p, len, "a"));
    uint32_t count = 9;
    OK(lq_delivery_count(peeked[0], &count));
    CHECK(count == 0);
    EXPECT_MSG(LQ_INVALID_STATE, "peeked", lq_delivery_ack(peeked[0]));
    for (size_t i = 0; i < n; i++) lq_delivery_free(peeked[i]);

    OK(lq_queue_cancel(q, ids[2]));
    EXPECT(LQ_NOT_FOUND, lq_queue_cancel(q, ids[2]));
    lq_delivery *ds[8];
    OK(lq_queue_receive_batch(q, 8, 0, ds, &n));
    CHECK(n == 2);
    EXPECT(LQ_INVALID_STATE, lq_queue_cancel(q, ids[0])); /* leased */
    OK(lq_delivery_nack(ds[0]));
    OK(lq_delivery_nack_with(ds[1], 0, S("retry")));
    lq_delivery_free(ds[0]);
    lq_delivery_free(ds[1]);
    OK(lq_queue_receive_batch(q, 1, 1000, ds, &n));
    CHECK(n == 1);
    OK(lq_delivery_count(ds[0], &count));
    CHECK(count == 2);
    OK(lq_delivery_ack(ds[0]));
    lq_delivery_free(ds[0]);
    uint64_t removed = 0;
    OK(lq_queue_purge(q, &removed));
    CHECK(removed == 1);
    EXPECT(LQ_TIMEOUT, lq_queue_receive_batch(q, 4, 10, ds, &n));

    /* Auto-ack: nothing to settle. */
    OK(lq_queue_send_bytes(q, S("once"), NULL));
    lq_delivery *d = NULL;
    OK(lq_queue_receive_auto_ack(q, 0, &d));
    EXPECT_MSG(LQ_INVALID_STATE, "auto-ack", lq_delivery_ack(d));
    OK(lq_delivery_body(d, &p, &len)); /* still readable */
    CHECK(eq(p, len, "once"));
    lq_delivery_free(d);

    /* Batch auto-ack: one call, nothing to settle, nothing redelivered. */
    OK(lq_queue_send_bytes(q, S("b1"), NULL));
    OK(lq_queue_send_bytes(q, S("b2"), NULL));
    OK(lq_queue_receive_batch_auto_ack(q, 8, 0, ds, &n));
    CHECK(n == 2);
    EXPECT_MSG(LQ_INVALID_STATE, "auto-ack", lq_delivery_ack(ds[0]));
    EXPECT(LQ_INVALID_STATE, lq_delivery_nack(ds[1]));
    OK(lq_delivery_body(ds[1], &p, &len)); /* still readable */
    CHECK(eq(p, len, "b2"));
    lq_delivery_free(ds[0]);
    lq_delivery_free(ds[1]);
    EXPECT(LQ_EMPTY, lq_queue_receive_batch_auto_ack(q, 8, 0, ds, &n));
    EXPECT(LQ_TIMEOUT, lq_queue_receive_batch_auto_ack(q, 8, 10, ds, &n));

    /* Batch ack: one call, a status each; bad input refused before any ack. */
    OK(lq_queue_send_bytes(q, S("k1"), NULL));
    OK(lq_queue_send_bytes(q, S("k2"), NULL));
    OK(lq_queue_send_bytes(q, S("k3"), NULL));
    OK(lq_queue_receive_batch(q, 8, 0, ds, &n));
    CHECK(n == 3);
    lq_status res[4] = {LQ_PANIC, LQ_PANIC, LQ_PANIC, LQ_PANIC};
    EXPECT(LQ_INVALID_ARGUMENT, lq_delivery_ack_batch(ds, 0, res));
    EXPECT(LQ_NULL_POINTER, lq_delivery_ack_batch(NULL, 3, res));
    lq_delivery *twice[2] = {ds[0], ds[0]};
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "twice", lq_delivery_ack_batch(twice, 2, res));
    lq_delivery *with_null[2] = {ds[0], NULL};
    EXPECT(LQ_NULL_POINTER, lq_delivery_ack_batch(with_null, 2, res));
    OK(lq_queue_send_bytes(q, S("auto"), NULL));
    OK(lq_queue_receive_auto_ack(q, 0, &d));
    lq_delivery *mixed[2] = {ds[0], d};
    EXPECT_MSG(LQ_INVALID_STATE, "auto-ack", lq_delivery_ack_batch(mixed, 2, res));
    lq_delivery_free(d);
    CHECK(res[0] == LQ_PANIC); /* not written */
    OK(lq_delivery_body(ds[0], &p, &len)); /* nothing settled */
    CHECK(eq(p, len, "k1"));
    OK(lq_delivery_ack_batch(ds, 3, res));
    CHECK(res[0] == LQ_OK && res[1] == LQ_OK && res[2] == LQ_OK && res[3] == LQ_PANIC);
    EXPECT_MSG(LQ_INVALID_STATE, "acked", lq_delivery_ack_batch(ds, 3, NULL));
    EXPECT(LQ_INVALID_STATE, lq_delivery_ack(ds[1]));
    for (size_t i = 0; i < 3; i++) lq_delivery_free(ds[i]);

    lq_queue_stats st;
    OK(lq_queue_get_stats(q, &st));
    CHECK(st.cancelled == 1 && st.purged == 1 && st.nacked == 2 && st.acked == 8);

    lq_namespace_stats ns_st;
    OK(lq_namespace_get_stats(ns, &ns_st));
    CHECK(ns_st.queues == 1 && ns_st.totals.sent == 10);
    lq_strings *names = NULL;
    OK(lq_namespace_list(ns, false, &names));
    size_t count_names = 0;
    OK(lq_strings_len(names, &count_names));
    CHECK(count_names == 1);
    OK(lq_strings_get(names, 0, &p, &len));
    CHECK(eq(p, len, "work"));
    EXPECT(LQ_NOT_FOUND, lq_strings_get(names, 1, &p, &len));
    lq_strings_free(names);
    OK(lq_namespace_name(ns, &p, &len));
    CHECK(eq(p, len, "batching"));

    OK(lq_namespace_delete_queue(ns, S("work")));
    EXPECT(LQ_NOT_FOUND, lq_namespace_delete_queue(ns, S("work")));
    EXPECT(LQ_CLOSED, lq_queue_send_bytes(q, S("x"), NULL));
    bool closed = false;
    OK(lq_queue_is_closed(q, &closed));
    CHECK(closed);
    lq_queue_free(q);
    lq_namespace_free(ns);
}

static void test_options_and_quotas(lq_broker *b) {
    lq_quotas *quo = NULL;
    OK(lq_quotas_new(&quo));
    OK(lq_quotas_set_max_queues(quo, 3));
    OK(lq_quotas_set_max_messages(quo, 3));
    OK(lq_quotas_set_max_bytes(quo, 1 << 20));
    OK(lq_quotas_set_max_message_size(quo, 16));
    lq_namespace *ns = NULL;
    OK(lq_broker_create_namespace(b, S("tenant"), quo, &ns));
    /* Declared again with the same quotas: the same namespace; with others:
     * LQ_ALREADY_EXISTS. */
    lq_namespace *dup = NULL;
    OK(lq_broker_create_namespace(b, S("tenant"), quo, &dup));
    lq_namespace_free(dup);
    dup = NULL;
    OK(lq_quotas_set_max_queues(quo, 4));
    EXPECT(LQ_ALREADY_EXISTS, lq_broker_create_namespace(b, S("tenant"), quo, &dup));
    CHECK(dup == NULL);
    lq_quotas_free(quo);

    lq_queue_options *o = NULL;
    OK(lq_queue_options_new(&o));
    OK(lq_queue_options_set_max_messages(o, 1));
    OK(lq_queue_options_set_max_bytes(o, 1000));
    OK(lq_queue_options_set_on_full(o, LQ_ON_FULL_REJECT, 0));
    OK(lq_queue_options_set_lease_time_ms(o, 30000));
    OK(lq_queue_options_set_max_deliveries(o, 1));
    OK(lq_queue_options_set_dead_letter_queue(o, S("small.dlq")));
    OK(lq_queue_options_set_default_priority(o, 5));
    OK(lq_queue_options_set_default_ttl_ms(o, 60000));
    OK(lq_queue_options_set_default_delay_ms(o, 0));
    OK(lq_queue_options_set_persistent(o, false));
    OK(lq_queue_options_set_strict_fifo(o, true));
    OK(lq_queue_options_set_shards(o, 2));
    lq_queue *q = NULL;
    OK(lq_namespace_create_queue(ns, S("small"), o, &q));
    lq_queue *q2 = NULL;
    EXPECT(LQ_ALREADY_EXISTS, lq_namespace_create_queue(ns, S("small"), o, &q2));
    lq_queue_options_free(o);

    OK(lq_queue_send_bytes(q, S("one"), NULL));
    EXPECT_MSG(LQ_FULL, "full", lq_queue_send_bytes(q, S("two"), NULL));
    EXPECT(LQ_TIMEOUT, lq_queue_send_with(q, msg("two"), LQ_ON_FULL_TIMEOUT, 10, NULL));
    EXPECT(LQ_FULL, lq_queue_send_with(q, msg("two"), LQ_ON_FULL_REJECT, 0, NULL));
    EXPECT_MSG(LQ_MESSAGE_TOO_LARGE, "exceeds the limit of 16", lq_queue_send_bytes(q, S("seventeen bytes!!"), NULL));

    /* The dead-letter queue: max_deliveries 1, a nack moves it there. */
    lq_delivery *d = NULL;
    OK(lq_queue_try_receive(q, &d));
    uint8_t prio = 0;
    OK(lq_delivery_priority(d, &prio));
    CHECK(prio == 5);
    OK(lq_delivery_nack_with(d, 0, S("bad input")));
    lq_delivery_free(d);
    lq_queue *dlq = NULL;
    OK(lq_namespace_get_queue(ns, S("small.dlq"), &dlq));
    OK(lq_queue_try_receive(dlq, &d));
    const uint8_t *p;
    size_t n;
    OK(lq_delivery_header(d, S("x-dead-letter-reason"), &p, &n));
    CHECK(n >= 9 && memcmp(p, "bad input", 9) == 0);
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);

    /* Quotas: 2 queues so far (small, small.dlq), one more allowed. */
    lq_queue *q3 = NULL, *q4 = NULL;
    OK(lq_namespace_queue(ns, S("third"), &q3));
    EXPECT_MSG(LQ_QUOTA_EXCEEDED, "max_queues", lq_namespace_queue(ns, S("fourth"), &q4));
    CHECK(q4 == NULL);
    OK(lq_queue_send_bytes(q3, S("1"), NULL));
    OK(lq_queue_send_bytes(q3, S("2"), NULL));
    OK(lq_queue_send_bytes(q3, S("3"), NULL));
    EXPECT_MSG(LQ_QUOTA_EXCEEDED, "max_messages", lq_queue_send_bytes(q3, S("4"), NULL));
    EXPECT(LQ_NOT_FOUND, lq_namespace_get_queue(ns, S("missing"), &q4));
    lq_namespace *other = NULL;
    EXPECT(LQ_NOT_FOUND, lq_broker_get_namespace(b, S("missing"), &other));
    OK(lq_broker_get_namespace(b, S("tenant"), &other));
    lq_namespace_free(other);

    lq_strings *all = NULL;
    OK(lq_broker_list_namespaces(b, &all));
    size_t count = 0;
    OK(lq_strings_len(all, &count));
    CHECK(count >= 3);
    lq_strings_free(all);

    lq_queue_free(q);
    lq_queue_free(q3);
    lq_queue_free(dlq);
    lq_namespace_free(ns);
}

static void test_topics(lq_broker *b) {
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("octavia"), &ns));
    lq_topic *t = NULL;
    OK(lq_namespace_topic(ns, S("OCTAVIA_PROV"), &t));
    lq_queue *all = NULL, *lbs = NULL;
    OK(lq_topic_subscribe(t, S("audit"), &all));
    OK(lq_topic_subscribe_name(t, S("lb-worker"), S("create_load_balancer"), &lbs));
    OK(lq_topic_subscribe_header(t, S("exec-7"), S("execution_id"), S("e-7"), NULL));
    lq_message *m = msg("{}");
    OK(lq_message_set_name(m, S("create_load_balancer")));
    size_t got = 0;
    OK(lq_topic_publish(t, m, &got));
    CHECK(got == 2);
    m = msg("{}");
    OK(lq_message_set_header(m, S("execution_id"), S("e-7")));
    OK(lq_topic_publish(t, m, &got));
    CHECK(got == 2);
    lq_queue_stats st;
    OK(lq_queue_get_stats(all, &st));
    CHECK(st.ready == 2);
    OK(lq_queue_get_stats(lbs, &st));
    CHECK(st.ready == 1);
    lq_strings *subs = NULL;
    OK(lq_topic_subscriptions(t, &subs));
    size_t n = 0;
    OK(lq_strings_len(subs, &n));
    CHECK(n == 3);
    lq_strings_free(subs);
    /* Counters: nothing went nowhere yet; a publish nobody's filter takes. */
    lq_topic_stats ts;
    memset(&ts, 0xAB, sizeof ts);
    ts.struct_size = sizeof ts;
    OK(lq_topic_get_stats(t, &ts));
    CHECK(ts.struct_size == sizeof ts && ts.published == 2 && ts.dropped_no_subscriber == 0 &&
          ts.unmatched == 0 && ts.subscriptions == 3);
    /* A topic without subscriptions: the publish is not an error, but counted;
     * one whose only filter does not match: counted apart. */
    lq_topic *empty = NULL;
    OK(lq_namespace_topic(ns, S("nobody-listens"), &empty));
    OK(lq_topic_publish(empty, msg("lost"), &got));
    CHECK(got == 0);
    OK(lq_topic_get_stats(empty, &ts));
    CHECK(ts.published == 1 && ts.dropped_no_subscriber == 1 && ts.subscriptions == 0);
    OK(lq_topic_subscribe_name(empty, S("picky"), S("never"), NULL));
    OK(lq_topic_publish(empty, msg("unnamed"), &got));
    CHECK(got == 0);
    OK(lq_topic_get_stats(empty, &ts));
    CHECK(ts.published == 2 && ts.dropped_no_subscriber == 1 && ts.unmatched == 1 &&
          ts.subscriptions == 1);
    /* A caller built against a smaller struct gets only what fits. */
    lq_topic_stats small;
    memset(&small, 0xAB, sizeof small);
    small.struct_size = offsetof(lq_topic_stats, dropped_no_subscriber);
    OK(lq_topic_get_stats(empty, &small));
    CHECK(small.published == 2 && small.dropped_no_subscriber == 0xABABABABABABABABull);
    small.struct_size = 0;
    EXPECT(LQ_INVALID_ARGUMENT, lq_topic_get_stats(empty, &small));
    EXPECT(LQ_NULL_POINTER, lq_topic_get_stats(empty, NULL));
    EXPECT(LQ_NULL_POINTER, lq_topic_get_stats(NULL, &ts));
    lq_topic_free(empty);
    OK(lq_topic_unsubscribe(t, S("exec-7")));
    EXPECT(LQ_NOT_FOUND, lq_topic_unsubscribe(t, S("exec-7")));
    OK(lq_namespace_list(ns, true, &subs));
    OK(lq_strings_len(subs, &n));
    CHECK(n == 2); /* OCTAVIA_PROV and nobody-listens */
    lq_strings_free(subs);
    lq_queue_free(all);
    lq_queue_free(lbs);
    lq_topic_free(t);
    lq_namespace_free(ns);
}

static void test_fd(lq_broker *b) {
    lq_queue *q = NULL;
    OK(lq_broker_queue(b, S("polled"), &q));
    int fd = -1;
    OK(lq_queue_fd(q, &fd));
    CHECK(fd >= 0);
    struct pollfd pfd = {fd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 0) == 0);
    OK(lq_queue_send_bytes(q, S("wake"), NULL));
    CHECK(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN));
    lq_delivery *d = NULL;
    OK(lq_queue_try_receive(q, &d));
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);
    EXPECT(LQ_EMPTY, lq_queue_try_receive(q, &d));
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 0) == 0);
    lq_queue_free(q);
}

/* ---- the pool and RPC ---------------------------------------------------------- */

typedef struct {
    atomic_int created, deleted, other, failed;
} counters;

static int32_t on_create(void *ud, const lq_delivery *d, lq_reply *reply) {
    (void)reply;
    const uint8_t *p;
    size_t n;
    if (lq_delivery_body(d, &p, &n) != LQ_OK) return 1;
    /* A borrowed delivery cannot be settled by the handler. */
    if (lq_delivery_ack((lq_delivery *)d) != LQ_INVALID_STATE) return 1;
    atomic_fetch_add(&((counters *)ud)->created, 1);
    return 0;
}

static int32_t on_delete(void *ud, const lq_delivery *d, lq_reply *reply) {
    (void)d;
    (void)reply;
    atomic_fetch_add(&((counters *)ud)->deleted, 1);
    return 0;
}

static int32_t on_other(void *ud, const lq_delivery *d, lq_reply *reply) {
    (void)d;
    atomic_fetch_add(&((counters *)ud)->other, 1);
    lq_reply_set_error(reply, S("no such method"));
    return 7;
}

static int32_t on_double(void *ud, const lq_delivery *d, lq_reply *reply) {
    (void)ud;
    const uint8_t *p;
    size_t n;
    if (lq_delivery_body(d, &p, &n) != LQ_OK) return 1;
    char buf[32];
    size_t k = n < sizeof buf - 1 ? n : sizeof buf - 1;
    memcpy(buf, p, k);
    buf[k] = 0;
    char out[32];
    int len = snprintf(out, sizeof out, "%ld", 2 * atol(buf));
    lq_reply_set_body(reply, (const uint8_t *)out, (size_t)len);
    return 0;
}

static int32_t on_fail(void *ud, const lq_delivery *d, lq_reply *reply) {
    (void)ud;
    (void)d;
    lq_reply_set_error(reply, S("division by zero"));
    return 1;
}

static void test_pool(lq_broker *b) {
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("pooled"), &ns));
    lq_queue_options *o = NULL;
    OK(lq_queue_options_new(&o));
    OK(lq_queue_options_set_max_deliveries(o, 2));
    lq_queue *q = NULL;
    OK(lq_namespace_create_queue(ns, S("controller"), o, &q));
    lq_queue_options_free(o);

    counters c;
    atomic_init(&c.created, 0);
    atomic_init(&c.deleted, 0);
    atomic_init(&c.other, 0);
    atomic_init(&c.failed, 0);
    lq_pool_builder *pb = NULL;
    OK(lq_pool_builder_new(ns, S("controller"), &pb));
    OK(lq_pool_builder_set_size(pb, 2));
    OK(lq_pool_builder_set_backoff_ms(pb, 1, 2));
    OK(lq_pool_builder_add_handler(pb, S("create"), on_create, &c));
    OK(lq_pool_builder_add_handler(pb, S("delete"), on_delete, &c));
    OK(lq_pool_builder_set_default_handler(pb, on_other, &c));
    lq_pool *pool = NULL;
    OK(lq_pool_builder_start(pb, &pool));

    for (int i = 0; i < 30; i++) {
        lq_message *m = msg("{}");
        static const char *const names[3] = {"create", "delete", "resize"};
        OK(lq_message_set_name(m, S(names[i % 3])));
        OK(lq_queue_send(q, m, NULL));
    }
    lq_pool_stats ps;
    for (int i = 0; i < 1000; i++) {
        OK(lq_pool_get_stats(pool, &ps));
        /* 10 + 10 succeed; 10 "resize" fail twice each, then dead-letter. */
        if (ps.handled >= 40) break;
        sleep_ms(10);
    }
    size_t returned = 99;
    OK(lq_pool_stop(pool, LQ_WAIT_FOREVER, &returned));
    CHECK(returned == 0);
    EXPECT(LQ_INVALID_STATE, lq_pool_stop(pool, 0, NULL));
    OK(lq_pool_get_stats(pool, &ps));
    CHECK(ps.handled == 40 && ps.succeeded == 20 && ps.failed == 20);
    CHECK(ps.max_active >= 1 && ps.max_active <= 2 && ps.active == 0);
    CHECK(atomic_load(&c.created) == 10 && atomic_load(&c.deleted) == 10);
    CHECK(atomic_load(&c.other) == 20);
    lq_pool_free(pool);
    lq_queue_stats st;
    OK(lq_queue_get_stats(q, &st));
    CHECK(st.dead_lettered == 10 && st.acked == 20);
    lq_queue_free(q);

    /* RPC: a server pool and a client. */
    OK(lq_pool_builder_new(ns, S("math"), &pb));
    OK(lq_pool_builder_add_handler(pb, S("double"), on_double, NULL));
    OK(lq_pool_builder_add_handler(pb, S("fail"), on_fail, NULL));
    OK(lq_pool_builder_start(pb, &pool));
    lq_queue_options *one = NULL;
    OK(lq_queue_options_new(&one));
    OK(lq_queue_options_set_max_deliveries(one, 1));
    lq_queue *math = NULL;
    lq_namespace *ns2 = NULL;
    OK(lq_broker_namespace(b, S("pooled"), &ns2));
    EXPECT(LQ_ALREADY_EXISTS, lq_namespace_create_queue(ns2, S("math"), one, &math));
    lq_queue_options_free(one);
    lq_namespace_free(ns2);

    lq_rpc_client *rpc = NULL;
    OK(lq_rpc_client_new(ns, &rpc));
    lq_message *m = msg("21");
    OK(lq_message_set_name(m, S("double")));
    lq_delivery *reply = NULL;
    OK(lq_rpc_call(rpc, S("math"), m, 5000, &reply));
    const uint8_t *p;
    size_t n;
    OK(lq_delivery_body(reply, &p, &n));
    CHECK(eq(p, n, "42"));
    EXPECT(LQ_INVALID_STATE, lq_delivery_ack(reply));
    lq_delivery_free(reply);

    m = msg("1");
    OK(lq_message_set_name(m, S("double")));
    EXPECT(LQ_TIMEOUT, lq_rpc_call(rpc, S("nobody-listens"), m, 20, &reply));
    uint64_t id = 0;
    OK(lq_rpc_cast(rpc, S("nobody-listens"), msg("cast"), &id));
    size_t fan = 9;
    OK(lq_rpc_fanout(rpc, S("no-subscribers"), msg("x"), &fan));
    CHECK(fan == 0);
    uint64_t late = 9;
    OK(lq_rpc_late_replies(rpc, &late));
    lq_rpc_client_free(rpc);
    lq_pool_free(pool);
    lq_namespace_free(ns);
}

static void test_rpc_remote_error(lq_broker *b) {
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("remote"), &ns));
    lq_queue_options *o = NULL;
    OK(lq_queue_options_new(&o));
    OK(lq_queue_options_set_max_deliveries(o, 1));
    lq_queue *q = NULL;
    OK(lq_namespace_create_queue(ns, S("svc"), o, &q));
    lq_queue_options_free(o);
    lq_pool_builder *pb = NULL;
    OK(lq_pool_builder_new(ns, S("svc"), &pb));
    OK(lq_pool_builder_set_default_handler(pb, on_fail, NULL));
    lq_pool *pool = NULL;
    OK(lq_pool_builder_start(pb, &pool));
    lq_rpc_client *rpc = NULL;
    OK(lq_rpc_client_new(ns, &rpc));
    lq_delivery *reply = NULL;
    EXPECT_MSG(LQ_REMOTE, "division by zero", lq_rpc_call(rpc, S("svc"), msg("1"), 5000, &reply));
    CHECK(reply == NULL);
    lq_rpc_client_free(rpc);
    lq_pool_free(pool);
    lq_queue_free(q);
    lq_namespace_free(ns);
}

/* ---- closing -------------------------------------------------------------------- */

static void *blocked_receiver(void *arg) {
    lq_delivery *d = NULL;
    lq_status s = lq_queue_receive((lq_queue *)arg, &d);
    return (void *)(intptr_t)s;
}

static void test_close(void) {
    lq_broker *b = NULL;
    OK(lq_broker_open(NULL, &b));
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("x"), &ns));
    lq_queue *q = NULL;
    OK(lq_namespace_queue(ns, S("q"), &q));
    lq_topic *t = NULL;
    OK(lq_namespace_topic(ns, S("t"), &t));
    OK(lq_queue_send_bytes(q, S("m"), NULL));
    lq_delivery *held = NULL;
    OK(lq_queue_try_receive(q, &held));

    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_receiver, q) == 0);
    sleep_ms(20);
    OK(lq_broker_close(b));
    void *res = NULL;
    CHECK(pthread_join(th, &res) == 0);
    CHECK((lq_status)(intptr_t)res == LQ_CLOSED);
    OK(lq_broker_close(b)); /* idempotent */
    bool closed = false;
    OK(lq_broker_is_closed(b, &closed));
    CHECK(closed);

    lq_namespace *ns2 = NULL;
    lq_queue *q2 = NULL;
    EXPECT(LQ_CLOSED, lq_broker_namespace(b, S("x"), &ns2));
    EXPECT(LQ_CLOSED, lq_broker_queue(b, S("q"), &q2));
    EXPECT(LQ_CLOSED, lq_namespace_queue(ns, S("new"), &q2));
    EXPECT(LQ_CLOSED, lq_queue_send_bytes(q, S("m"), NULL));
    lq_delivery *d = NULL;
    EXPECT(LQ_CLOSED, lq_queue_try_receive(q, &d));
    EXPECT(LQ_CLOSED, lq_queue_receive(q, &d));
    EXPECT(LQ_CLOSED, lq_topic_publish(t, msg("m"), NULL));
    lq_pool_builder *pb = NULL;
    EXPECT(LQ_CLOSED, lq_pool_builder_new(ns, S("q"), &pb));
    lq_rpc_client *rpc = NULL;
    EXPECT(LQ_CLOSED, lq_rpc_client_new(ns, &rpc));
    EXPECT(LQ_CLOSED, lq_broker_flush(b));
    /* A delivery held across the close: settling fails cleanly. */
    lq_status s = lq_delivery_ack(held);
    CHECK(s == LQ_CLOSED || s == LQ_LEASE_EXPIRED || s == LQ_OK);
    lq_delivery_free(held);

    /* Freeing the broker first: the derived handles answer LQ_CLOSED. */
    lq_broker_free(b);
    EXPECT(LQ_CLOSED, lq_queue_send_bytes(q, S("m"), NULL));
    EXPECT(LQ_CLOSED, lq_namespace_queue(ns, S("q"), &q2));
    lq_topic_free(t);
    lq_queue_free(q);
    lq_namespace_free(ns);

    /* lq_broker_free alone closes too. */
    OK(lq_broker_open(NULL, &b));
    OK(lq_broker_queue(b, S("q"), &q));
    lq_broker_free(b);
    EXPECT(LQ_CLOSED, lq_queue_send_bytes(q, S("m"), NULL));
    lq_queue_free(q);
}

/* ---- the journal ---------------------------------------------------------------- */

static void test_persistence(void) {
    char dir[] = "/tmp/lq-ctest-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    lq_broker_options *bo = NULL;
    OK(lq_broker_options_new(&bo));
    OK(lq_broker_options_set_data_dir(bo, S(dir)));
    OK(lq_broker_options_set_sync_mode(bo, LQ_SYNC_ALWAYS, 0));
    OK(lq_broker_options_set_segment_size(bo, 1 << 20));
    lq_quotas *quo = NULL;
    OK(lq_quotas_new(&quo));
    OK(lq_broker_options_set_default_quotas(bo, quo));
    lq_quotas_free(quo);
    lq_queue_options *qo = NULL;
    OK(lq_queue_options_new(&qo));
    OK(lq_queue_options_set_persistent(qo, true));
    OK(lq_broker_options_set_default_queue_options(bo, qo));
    lq_queue_options_free(qo);

    lq_broker *b = NULL;
    OK(lq_broker_open(bo, &b));
    lq_recovery_report r;
    OK(lq_broker_recovery_report(b, &r));
    CHECK(r.messages_recovered == 0);
    lq_broker *b2 = NULL;
    /* A second open of a held directory attaches to its host (here, this same
     * process); an exclusive one is LQ_LOCKED. */
    OK(lq_broker_open(bo, &b2));
    bool attached = false;
    OK(lq_broker_is_attached(b2, &attached));
    CHECK(attached);
    lq_broker_free(b2);
    b2 = NULL;
    OK(lq_broker_options_set_exclusive(bo, true));
    EXPECT_MSG(LQ_LOCKED, "locked", lq_broker_open(bo, &b2));
    CHECK(b2 == NULL);
    OK(lq_broker_options_set_exclusive(bo, false));

    lq_queue *q = NULL;
    OK(lq_broker_queue(b, S("durable"), &q));
    for (int i = 0; i < 3; i++) {
        lq_message *m = msg("keep me");
        OK(lq_message_set_name(m, S("k")));
        OK(lq_queue_send(q, m, NULL));
    }
    lq_message *m = msg("volatile");
    OK(lq_message_set_persistent(m, false));
    OK(lq_queue_send(q, m, NULL));
    lq_delivery *d = NULL;
    OK(lq_queue_try_receive(q, &d));
    bool persistent = false;
    OK(lq_delivery_is_persistent(d, &persistent));
    CHECK(persistent);
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);
    OK(lq_queue_flush(q));
    OK(lq_broker_flush(b));
    lq_queue_free(q);
    lq_broker_free(b);

    OK(lq_broker_open(bo, &b));
    OK(lq_broker_recovery_report(b, &r));
    CHECK(r.messages_recovered == 2 && r.queues >= 1 && r.bytes_cut == 0 && r.damage_count == 0);
    const uint8_t *p;
    size_t n;
    EXPECT(LQ_NOT_FOUND, lq_broker_recovery_damage(b, 0, &p, &n));
    OK(lq_broker_queue(b, S("durable"), &q));
    OK(lq_queue_try_receive(q, &d));
    OK(lq_delivery_body(d, &p, &n));
    CHECK(eq(p, n, "keep me"));
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);
    lq_queue_free(q);
    lq_broker_free(b);
    lq_broker_options_free(bo);

    /* A broker without a data directory has no report. */
    OK(lq_broker_open(NULL, &b));
    EXPECT(LQ_NOT_FOUND, lq_broker_recovery_report(b, &r));
    lq_broker_free(b);

    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* The scenario over the C ABI: a namespace's quotas and a topic's
 * subscriptions come back with the broker. */
static void test_definitions_survive_reopen(void) {
    char dir[] = "/tmp/lq-ctest-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    lq_broker_options *bo = NULL;
    OK(lq_broker_options_new(&bo));
    OK(lq_broker_options_set_data_dir(bo, S(dir)));
    for (int round = 0; round < 2; round++) {
        lq_broker *b = NULL;
        OK(lq_broker_open(bo, &b));
        lq_quotas *quo = NULL;
        OK(lq_quotas_new(&quo));
        OK(lq_quotas_set_max_messages(quo, 5));
        lq_namespace *ns = NULL;
        /* The second round declares it again: the recovered one, unchanged. */
        OK(lq_broker_create_namespace(b, S("tenant"), quo, &ns));
        lq_quotas_free(quo);
        lq_topic *t = NULL;
        OK(lq_namespace_topic(ns, S("events"), &t));
        if (round == 0) {
            OK(lq_topic_subscribe_name(t, S("sub1"), S("ev"), NULL));
        }
        lq_strings *subs = NULL;
        size_t n = 0;
        OK(lq_topic_subscriptions(t, &subs));
        OK(lq_strings_len(subs, &n));
        CHECK(n == 1);
        lq_strings_free(subs);
        lq_message *m = msg("x");
        OK(lq_message_set_name(m, S("ev")));
        size_t got = 0;
        OK(lq_topic_publish(t, m, &got));
        CHECK(got == 1);
        m = msg("y"); /* not named "ev": the filter survived too */
        OK(lq_topic_publish(t, m, &got));
        CHECK(got == 0);
        if (round == 1) {
            /* 1 held in sub1 (the publish above; volatile messages are not
             * kept): 4 more fit, the quota refuses the fifth. */
            lq_queue *q = NULL;
            OK(lq_namespace_queue(ns, S("other"), &q));
            for (int i = 0; i < 4; i++) {
                OK(lq_queue_send(q, msg("o"), NULL));
            }
            EXPECT(LQ_QUOTA_EXCEEDED, lq_queue_send(q, msg("o"), NULL));
            lq_queue_free(q);
        }
        lq_topic_free(t);
        lq_namespace_free(ns);
        lq_broker_free(b);
    }
    lq_broker_options_free(bo);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_status_names();
    lq_broker *b = NULL;
    OK(lq_broker_open(NULL, &b));
    test_send_receive(b);
    test_message_fields(b);
    test_batch_peek_cancel(b);
    test_options_and_quotas(b);
    test_topics(b);
    test_fd(b);
    test_pool(b);
    test_rpc_remote_error(b);
    lq_broker_free(b);
    test_close();
    test_persistence();
    test_definitions_survive_reopen();
    printf("test_api: all checks passed\n");
    return 0;
}
