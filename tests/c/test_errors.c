/* Bad input at every entry point: NULL handles and out-pointers, invalid UTF-8,
 * invalid names, out-of-range arguments, oversized messages, a full queue,
 * quotas, double settling, settling what cannot be settled, a closed broker.
 * Each must give its specific status and a message, never a crash, and leave
 * the out-parameters untouched. */
#include "check.h"

#define BAD_UTF8 (const uint8_t *)"\xff\xfe", 2

static lq_message *msg(const char *body) {
    lq_message *m = NULL;
    OK(lq_message_new(S(body), &m));
    return m;
}

static void null_handles(void) {
    const uint8_t *p;
    size_t n;
    uint64_t u64;
    bool flag;
    void *out = NULL;

    /* Every `_free` accepts NULL. */
    lq_broker_free(NULL);
    lq_broker_options_free(NULL);
    lq_queue_options_free(NULL);
    lq_quotas_free(NULL);
    lq_namespace_free(NULL);
    lq_queue_free(NULL);
    lq_message_free(NULL);
    lq_delivery_free(NULL);
    lq_topic_free(NULL);
    lq_strings_free(NULL);
    lq_pool_builder_free(NULL);
    lq_pool_free(NULL);
    lq_rpc_client_free(NULL);

    /* NULL out-pointers on constructors. */
    EXPECT_MSG(LQ_NULL_POINTER, "out is NULL", lq_broker_options_new(NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_new(NULL));
    EXPECT(LQ_NULL_POINTER, lq_quotas_new(NULL));
    EXPECT(LQ_NULL_POINTER, lq_message_new(S("x"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_broker_open(NULL, NULL));
    EXPECT_MSG(LQ_NULL_POINTER, "body is NULL", lq_message_new(NULL, 3, (lq_message **)&out));
    CHECK(out == NULL);

    /* NULL handles, one call per function. */
    EXPECT_MSG(LQ_NULL_POINTER, "opts is NULL", lq_broker_options_set_data_dir(NULL, S("/tmp")));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_sync_mode(NULL, LQ_SYNC_NONE, 0));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_segment_size(NULL, 1 << 20));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_default_quotas(NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_default_queue_options(NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_quotas_set_max_queues(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_quotas_set_max_messages(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_quotas_set_max_bytes(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_quotas_set_max_message_size(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_max_messages(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_max_bytes(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_on_full(NULL, LQ_ON_FULL_BLOCK, 0));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_default_ttl_ms(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_default_delay_ms(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_default_priority(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_lease_time_ms(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_max_deliveries(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_dead_letter_queue(NULL, S("d")));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_persistent(NULL, true));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_strict_fifo(NULL, true));
    EXPECT(LQ_NULL_POINTER, lq_queue_options_set_shards(NULL, 1));

    EXPECT_MSG(LQ_NULL_POINTER, "broker is NULL", lq_broker_close(NULL));
    EXPECT(LQ_NULL_POINTER, lq_broker_is_closed(NULL, &flag));
    EXPECT(LQ_NULL_POINTER, lq_broker_namespace(NULL, S("n"), (lq_namespace **)&out));
    EXPECT(LQ_NULL_POINTER, lq_broker_create_namespace(NULL, S("n"), NULL, (lq_namespace **)&out));
    EXPECT(LQ_NULL_POINTER, lq_broker_get_namespace(NULL, S("n"), (lq_namespace **)&out));
    EXPECT(LQ_NULL_POINTER, lq_broker_queue(NULL, S("q"), (lq_queue **)&out));
    EXPECT(LQ_NULL_POINTER, lq_broker_list_namespaces(NULL, (lq_strings **)&out));
    EXPECT(LQ_NULL_POINTER, lq_broker_flush(NULL));
    EXPECT(LQ_NULL_POINTER, lq_broker_recovery_report(NULL, (lq_recovery_report *)&u64));
    EXPECT(LQ_NULL_POINTER, lq_broker_recovery_damage(NULL, 0, &p, &n));

    EXPECT_MSG(LQ_NULL_POINTER, "ns is NULL", lq_namespace_queue(NULL, S("q"), (lq_queue **)&out));
    EXPECT(LQ_NULL_POINTER, lq_namespace_create_queue(NULL, S("q"), NULL, (lq_queue **)&out));
    EXPECT(LQ_NULL_POINTER, lq_namespace_get_queue(NULL, S("q"), (lq_queue **)&out));
    EXPECT(LQ_NULL_POINTER, lq_namespace_topic(NULL, S("t"), (lq_topic **)&out));
    EXPECT(LQ_NULL_POINTER, lq_namespace_delete_queue(NULL, S("q")));
    EXPECT(LQ_NULL_POINTER, lq_namespace_list(NULL, false, (lq_strings **)&out));
    EXPECT(LQ_NULL_POINTER, lq_namespace_get_stats(NULL, (lq_namespace_stats *)&u64));
    EXPECT(LQ_NULL_POINTER, lq_namespace_name(NULL, &p, &n));
    EXPECT(LQ_NULL_POINTER, lq_strings_len(NULL, &n));
    EXPECT(LQ_NULL_POINTER, lq_strings_get(NULL, 0, &p, &n));

    EXPECT(LQ_NULL_POINTER, lq_message_set_name(NULL, S("n")));
    EXPECT(LQ_NULL_POINTER, lq_message_set_correlation_id(NULL, S("c")));
    EXPECT(LQ_NULL_POINTER, lq_message_set_header(NULL, S("k"), S("v")));
    EXPECT(LQ_NULL_POINTER, lq_message_set_priority(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_message_set_ttl_ms(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_message_set_delay_ms(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_message_set_persistent(NULL, true));
    EXPECT(LQ_NULL_POINTER, lq_message_size(NULL, &u64));

    EXPECT_MSG(LQ_NULL_POINTER, "queue is NULL", lq_queue_send(NULL, msg("consumed"), &u64));
    EXPECT(LQ_NULL_POINTER, lq_queue_send_with(NULL, msg("consumed"), LQ_ON_FULL_REJECT, 0, &u64));
    EXPECT(LQ_NULL_POINTER, lq_queue_send_bytes(NULL, S("x"), &u64));
    lq_message *batch[2] = {msg("a"), msg("b")};
    EXPECT(LQ_NULL_POINTER, lq_queue_send_batch(NULL, batch, 2, NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_try_receive(NULL, (lq_delivery **)&out));
    EXPECT(LQ_NULL_POINTER, lq_queue_receive(NULL, (lq_delivery **)&out));
    EXPECT(LQ_NULL_POINTER, lq_queue_receive_timeout(NULL, 1, (lq_delivery **)&out));
    EXPECT(LQ_NULL_POINTER, lq_queue_receive_auto_ack(NULL, 0, (lq_delivery **)&out));
    lq_delivery *ds[2];
    EXPECT(LQ_NULL_POINTER, lq_queue_receive_batch(NULL, 2, 0, ds, &n));
    EXPECT(LQ_NULL_POINTER, lq_queue_receive_batch_auto_ack(NULL, 2, 0, ds, &n));
    EXPECT(LQ_NULL_POINTER, lq_queue_peek(NULL, 2, ds, &n));
    EXPECT(LQ_NULL_POINTER, lq_queue_cancel(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_queue_purge(NULL, &u64));
    EXPECT(LQ_NULL_POINTER, lq_queue_get_stats(NULL, (lq_queue_stats *)&u64));
    EXPECT(LQ_NULL_POINTER, lq_queue_flush(NULL));
    int fd;
    EXPECT(LQ_NULL_POINTER, lq_queue_fd(NULL, &fd));
    EXPECT(LQ_NULL_POINTER, lq_queue_is_closed(NULL, &flag));
    EXPECT(LQ_NULL_POINTER, lq_queue_name(NULL, &p, &n));

    EXPECT_MSG(LQ_NULL_POINTER, "d is NULL", lq_delivery_ack(NULL));
    EXPECT(LQ_NULL_POINTER, lq_delivery_nack(NULL));
    EXPECT(LQ_NULL_POINTER, lq_delivery_nack_with(NULL, 0, NULL, 0));
    EXPECT(LQ_NULL_POINTER, lq_delivery_extend(NULL, 0));
    EXPECT(LQ_NULL_POINTER, lq_delivery_id(NULL, &u64));
    EXPECT(LQ_NULL_POINTER, lq_delivery_body(NULL, &p, &n));
    EXPECT(LQ_NULL_POINTER, lq_delivery_name(NULL, &p, &n));
    EXPECT(LQ_NULL_POINTER, lq_delivery_correlation_id(NULL, &p, &n));
    EXPECT(LQ_NULL_POINTER, lq_delivery_header(NULL, S("k"), &p, &n));
    EXPECT(LQ_NULL_POINTER, lq_delivery_header_count(NULL, &n));
    EXPECT(LQ_NULL_POINTER, lq_delivery_header_at(NULL, 0, &p, &n, &p, &n));
    uint8_t prio;
    EXPECT(LQ_NULL_POINTER, lq_delivery_priority(NULL, &prio));
    uint32_t cnt;
    EXPECT(LQ_NULL_POINTER, lq_delivery_count(NULL, &cnt));
    EXPECT(LQ_NULL_POINTER, lq_delivery_is_persistent(NULL, &flag));
    EXPECT(LQ_NULL_POINTER, lq_delivery_expires_at(NULL, &u64));

    EXPECT_MSG(LQ_NULL_POINTER, "topic is NULL", lq_topic_subscribe(NULL, S("q"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_topic_subscribe_name(NULL, S("q"), S("n"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_topic_subscribe_header(NULL, S("q"), S("k"), S("v"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_topic_unsubscribe(NULL, S("q")));
    EXPECT(LQ_NULL_POINTER, lq_topic_subscriptions(NULL, (lq_strings **)&out));
    EXPECT(LQ_NULL_POINTER, lq_topic_publish(NULL, msg("consumed"), &n));

    EXPECT(LQ_NULL_POINTER, lq_pool_builder_new(NULL, S("q"), (lq_pool_builder **)&out));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_set_size(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_set_backoff_ms(NULL, 1, 2));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_add_handler(NULL, S("n"), NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_set_default_handler(NULL, NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_start(NULL, (lq_pool **)&out));
    EXPECT(LQ_NULL_POINTER, lq_pool_get_stats(NULL, (lq_pool_stats *)&u64));
    EXPECT(LQ_NULL_POINTER, lq_pool_stop(NULL, 0, NULL));
    EXPECT(LQ_NULL_POINTER, lq_reply_set_body(NULL, S("x")));
    EXPECT(LQ_NULL_POINTER, lq_reply_set_error(NULL, S("x")));

    EXPECT(LQ_NULL_POINTER, lq_rpc_client_new(NULL, (lq_rpc_client **)&out));
    EXPECT(LQ_NULL_POINTER, lq_rpc_call(NULL, S("q"), msg("consumed"), 1, (lq_delivery **)&out));
    EXPECT(LQ_NULL_POINTER, lq_rpc_cast(NULL, S("q"), msg("consumed"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_rpc_fanout(NULL, S("t"), msg("consumed"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_rpc_late_replies(NULL, &u64));
    CHECK(out == NULL); /* no output was ever written */
}

static void null_outputs_and_strings(lq_broker *b) {
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("errors"), &ns));
    lq_queue *q = NULL;
    OK(lq_namespace_queue(ns, S("q"), &q));

    EXPECT_MSG(LQ_NULL_POINTER, "out is NULL", lq_broker_namespace(b, S("n"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_namespace_queue(ns, S("q"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_try_receive(q, NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_get_stats(q, NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_fd(q, NULL));
    size_t n = 77;
    EXPECT(LQ_NULL_POINTER, lq_queue_receive_batch(q, 4, 0, NULL, &n));
    EXPECT(LQ_NULL_POINTER, lq_queue_receive_batch_auto_ack(q, 4, 0, NULL, &n));
    CHECK(n == 77);
    EXPECT(LQ_NULL_POINTER, lq_queue_send(q, NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_send_bytes(q, NULL, 5, NULL));
    lq_message *batch[3] = {msg("a"), NULL, msg("c")};
    EXPECT_MSG(LQ_NULL_POINTER, "msgs[1]", lq_queue_send_batch(q, batch, 3, NULL));
    EXPECT(LQ_NULL_POINTER, lq_queue_send_batch(q, NULL, 3, NULL));
    OK(lq_queue_send_batch(q, NULL, 0, NULL)); /* nothing to send */

    /* Invalid UTF-8 and invalid names. */
    lq_namespace *ns2 = NULL;
    lq_queue *q2 = NULL;
    EXPECT_MSG(LQ_INVALID_UTF8, "name is not valid UTF-8", lq_broker_namespace(b, BAD_UTF8, &ns2));
    EXPECT(LQ_INVALID_UTF8, lq_namespace_queue(ns, BAD_UTF8, &q2));
    EXPECT(LQ_INVALID_UTF8, lq_broker_queue(b, BAD_UTF8, &q2));
    EXPECT_MSG(LQ_INVALID_NAME, "a b", lq_namespace_queue(ns, S("a b"), &q2));
    EXPECT(LQ_INVALID_NAME, lq_namespace_queue(ns, S(""), &q2));
    EXPECT(LQ_INVALID_NAME, lq_namespace_queue(ns, S("0123456789012345678901234567890123456789012345678901234567890123456789"), &q2));
    EXPECT(LQ_INVALID_NAME, lq_broker_namespace(b, S("bad/name"), &ns2));
    EXPECT(LQ_INVALID_NAME, lq_namespace_topic(ns, S("bad topic"), (lq_topic **)&q2));
    CHECK(ns2 == NULL && q2 == NULL);
    /* The lookups and delete validate names like the create calls (issue 13, item 17):
     * empty, 65 characters, an embedded NUL, a space, a slash, non-ASCII. */
    {
        static const char long65[] =
            "01234567890123456789012345678901234567890123456789012345678901234";
        static const char nul[] = {'a', '\0', 'b'};
        struct { const uint8_t *p; size_t n; } bad[] = {
            {(const uint8_t *)"", 0},
            {(const uint8_t *)long65, 65},
            {(const uint8_t *)nul, sizeof nul},
            {(const uint8_t *)"a b", 3},
            {(const uint8_t *)"a/b", 3},
            {(const uint8_t *)"caf\xc3\xa9", 5},
        };
        CHECK(strlen(long65) == 65);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            EXPECT(LQ_INVALID_NAME, lq_broker_get_namespace(b, bad[i].p, bad[i].n, &ns2));
            EXPECT(LQ_INVALID_NAME, lq_namespace_get_queue(ns, bad[i].p, bad[i].n, &q2));
            EXPECT(LQ_INVALID_NAME, lq_namespace_delete_queue(ns, bad[i].p, bad[i].n));
        }
        CHECK(ns2 == NULL && q2 == NULL);
        /* A valid name that does not exist is still LQ_NOT_FOUND. */
        EXPECT(LQ_NOT_FOUND, lq_broker_get_namespace(b, S("nope"), &ns2));
        EXPECT(LQ_NOT_FOUND, lq_namespace_get_queue(ns, S("nope"), &q2));
        EXPECT(LQ_NOT_FOUND, lq_namespace_delete_queue(ns, S("nope")));
    }
    lq_message *m = msg("x");
    EXPECT(LQ_INVALID_UTF8, lq_message_set_name(m, BAD_UTF8));
    EXPECT(LQ_INVALID_UTF8, lq_message_set_correlation_id(m, BAD_UTF8));
    EXPECT(LQ_INVALID_UTF8, lq_message_set_header(m, BAD_UTF8, S("v")));
    EXPECT(LQ_INVALID_ARGUMENT, lq_message_set_header(m, S(""), S("v")));
    OK(lq_message_set_header(m, S("k"), BAD_UTF8)); /* values are bytes */
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "priority 10", lq_message_set_priority(m, 10));
    uint64_t size = 0; /* refused setters left the message as it was */
    OK(lq_message_size(m, &size));
    CHECK(size == 1 + 1 + 2);
    lq_message_free(m);

    lq_broker_options *bo = NULL;
    OK(lq_broker_options_new(&bo));
    EXPECT(LQ_INVALID_UTF8, lq_broker_options_set_data_dir(bo, BAD_UTF8));
    EXPECT(LQ_INVALID_ARGUMENT, lq_broker_options_set_data_dir(bo, NULL, 0));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "sync mode 7", lq_broker_options_set_sync_mode(bo, 7, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_broker_options_set_sync_mode(bo, LQ_SYNC_INTERVAL, 0));
    OK(lq_broker_options_set_sync_mode(bo, LQ_SYNC_INTERVAL, 5));
    EXPECT(LQ_INVALID_ARGUMENT, lq_broker_options_set_segment_size(bo, 10));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_default_quotas(bo, NULL));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_default_queue_options(bo, NULL));
    lq_broker_options_free(bo);

    lq_queue_options *o = NULL;
    OK(lq_queue_options_new(&o));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "max_messages", lq_queue_options_set_max_messages(o, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_options_set_max_bytes(o, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_options_set_lease_time_ms(o, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_options_set_max_deliveries(o, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_options_set_shards(o, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_options_set_default_priority(o, 10));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "on_full mode 9", lq_queue_options_set_on_full(o, 9, 0));
    EXPECT(LQ_INVALID_NAME, lq_queue_options_set_dead_letter_queue(o, S("no way")));
    EXPECT(LQ_INVALID_UTF8, lq_queue_options_set_dead_letter_queue(o, BAD_UTF8));
    OK(lq_queue_options_set_dead_letter_queue(o, S("self")));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "own dead-letter", lq_namespace_create_queue(ns, S("self"), o, &q2));
    lq_queue_options_free(o);
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_send_with(q, msg("x"), 42, 0, NULL));

    /* Receives with bad arguments. */
    lq_delivery *ds[2];
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_receive_batch(q, 0, 0, ds, &n));
    EXPECT(LQ_INVALID_ARGUMENT, lq_queue_receive_batch_auto_ack(q, 0, 0, ds, &n));

    /* Topic and pool arguments. */
    lq_topic *t = NULL;
    OK(lq_namespace_topic(ns, S("t"), &t));
    EXPECT(LQ_INVALID_NAME, lq_topic_subscribe(t, S("bad name"), NULL));
    EXPECT(LQ_INVALID_UTF8, lq_topic_subscribe_name(t, S("sub"), BAD_UTF8, NULL));
    EXPECT(LQ_INVALID_UTF8, lq_topic_subscribe_header(t, S("sub"), BAD_UTF8, S("v"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_topic_publish(t, NULL, NULL));
    lq_topic_free(t);
    lq_pool_builder *pb = NULL;
    EXPECT(LQ_INVALID_NAME, lq_pool_builder_new(ns, S("bad name"), &pb));
    OK(lq_pool_builder_new(ns, S("pq"), &pb));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "pool size 0", lq_pool_builder_set_size(pb, 0));
    EXPECT_MSG(LQ_NULL_POINTER, "handler is NULL", lq_pool_builder_add_handler(pb, S("n"), NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_set_default_handler(pb, NULL, NULL));
    EXPECT(LQ_NULL_POINTER, lq_pool_builder_start(pb, NULL)); /* consumed anyway */

    lq_strings *list = NULL;
    OK(lq_namespace_list(ns, false, &list));
    const uint8_t *p;
    EXPECT(LQ_NULL_POINTER, lq_strings_get(list, 0, NULL, &n));
    EXPECT(LQ_NULL_POINTER, lq_strings_get(list, 0, &p, NULL));
    lq_strings_free(list);

    lq_queue_free(q);
    lq_namespace_free(ns);
}

static void limits_and_settling(lq_broker *b) {
    lq_quotas *quo = NULL;
    OK(lq_quotas_new(&quo));
    OK(lq_quotas_set_max_message_size(quo, 8));
    OK(lq_quotas_set_max_bytes(quo, 12));
    lq_namespace *ns = NULL;
    OK(lq_broker_create_namespace(b, S("limited"), quo, &ns));
    lq_quotas_free(quo);
    lq_queue *q = NULL;
    OK(lq_namespace_queue(ns, S("q"), &q));
    uint64_t id = 42;
    EXPECT_MSG(LQ_MESSAGE_TOO_LARGE, "message of 9 bytes", lq_queue_send_bytes(q, S("123456789"), &id));
    CHECK(id == 42);
    lq_message *m = msg("1234");
    OK(lq_message_set_name(m, S("12345"))); /* 9 bytes with the name */
    EXPECT(LQ_MESSAGE_TOO_LARGE, lq_queue_send(q, m, &id));
    OK(lq_queue_send_bytes(q, S("12345678"), &id));
    EXPECT_MSG(LQ_QUOTA_EXCEEDED, "max_bytes", lq_queue_send_bytes(q, S("12345"), NULL));
    lq_message *two[2] = {msg("1"), msg("2345")};
    EXPECT(LQ_QUOTA_EXCEEDED, lq_queue_send_batch(q, two, 2, NULL));

    /* Double ack, ack after nack, nack after ack, extend after ack. */
    lq_delivery *d = NULL;
    OK(lq_queue_try_receive(q, &d));
    OK(lq_delivery_ack(d));
    EXPECT_MSG(LQ_INVALID_STATE, "was acked", lq_delivery_ack(d));
    EXPECT(LQ_INVALID_STATE, lq_delivery_nack(d));
    EXPECT(LQ_INVALID_STATE, lq_delivery_nack_with(d, 10, S("x")));
    EXPECT(LQ_INVALID_STATE, lq_delivery_extend(d, 10));
    const uint8_t *p = (const uint8_t *)"untouched";
    size_t n = 9;
    EXPECT(LQ_INVALID_STATE, lq_delivery_body(d, &p, &n));
    CHECK(eq(p, n, "untouched"));
    EXPECT(LQ_INVALID_STATE, lq_delivery_name(d, &p, &n));
    lq_delivery_free(d); /* free after ack is fine */

    OK(lq_queue_send_bytes(q, S("again"), NULL));
    OK(lq_queue_try_receive(q, &d));
    OK(lq_delivery_nack(d));
    EXPECT_MSG(LQ_INVALID_STATE, "was nacked", lq_delivery_ack(d));
    lq_delivery_free(d);
    OK(lq_queue_try_receive(q, &d));
    EXPECT(LQ_INVALID_UTF8, lq_delivery_nack_with(d, 0, BAD_UTF8));
    OK(lq_delivery_ack(d)); /* the failed nack did not settle it */
    lq_delivery_free(d);

    /* Unknown ids. */
    EXPECT_MSG(LQ_NOT_FOUND, "999", lq_queue_cancel(q, 999));

    lq_queue_free(q);
    lq_namespace_free(ns);
}

static void closed_broker(void) {
    lq_broker *b = NULL;
    OK(lq_broker_open(NULL, &b));
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("n"), &ns));
    OK(lq_broker_close(b));
    lq_queue *q = NULL;
    EXPECT_MSG(LQ_CLOSED, "closed", lq_broker_queue(b, S("q"), &q));
    EXPECT(LQ_CLOSED, lq_namespace_queue(ns, S("q"), &q));
    EXPECT(LQ_CLOSED, lq_namespace_create_queue(ns, S("q"), NULL, &q));
    EXPECT(LQ_CLOSED, lq_namespace_topic(ns, S("t"), (lq_topic **)&q));
    EXPECT(LQ_CLOSED, lq_namespace_delete_queue(ns, S("q")));
    CHECK(q == NULL);
    lq_namespace_free(ns);
    lq_broker_free(b);
}

int main(void) {
    null_handles();
    lq_broker *b = NULL;
    OK(lq_broker_open(NULL, &b));
    null_outputs_and_strings(b);
    limits_and_settling(b);
    lq_broker_free(b);
    closed_broker();
    printf("test_errors: all checks passed\n");
    return 0;
}
