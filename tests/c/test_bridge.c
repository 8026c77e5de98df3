/* The bridge from C (lq_bridge_*), against a real nats-server with JetStream
 * that this test starts on 127.0.0.1 with a free port and a temporary store
 * (fork/exec; found at $LQ_NATS_SERVER, on PATH or in /usr/sbin — `make setup`
 * installs Debian's). The server is killed (SIGKILL) at exit, on a failed
 * CHECK too, and dies with this process if it is killed (PR_SET_PDEATHSIG);
 * every wait is bounded.
 *
 * Messages go out (a local queue forwarded to a subject) and come back (the
 * same subject received into another local queue), with their fields; the
 * stats count them; then the error paths: NULL, bad URL, bad settings, bad
 * subject, no route, nobody listening (LQ_IO), no stream (LQ_NOT_FOUND), a
 * queue forwarded twice, a closed broker, a versioned stats struct, a forked
 * child, stop. */
#include "nats_server.h"

static lq_bridge_builder *nats(const char *u) {
    lq_bridge_builder *b = NULL;
    OK(lq_bridge_nats_new(S(u), &b));
    CHECK(b != NULL);
    return b;
}

static lq_bridge_stats stats_of(const lq_bridge *br) {
    lq_bridge_stats s;
    memset(&s, 0xAB, sizeof s);
    s.struct_size = sizeof s;
    OK(lq_bridge_get_stats(br, &s));
    CHECK(s.struct_size == sizeof s);
    return s;
}

/* Waits (bounded) until the bridge's counters say so. */
#define WAIT_UNTIL(br, secs, cond)                                                    \
    do {                                                                              \
        double end_ = now_s() + (secs);                                               \
        for (;;) {                                                                    \
            lq_bridge_stats s = stats_of(br);                                         \
            if (cond) break;                                                          \
            if (now_s() > end_) {                                                     \
                fprintf(stderr,                                                       \
                        "%s:%d: not within %d s: %s (forwarded %llu received %llu "   \
                        "last error \"%s\")\n",                                       \
                        __FILE__, __LINE__, (int)(secs), #cond,                       \
                        (unsigned long long)s.forwarded, (unsigned long long)s.received, \
                        s.last_error);                                                \
                exit(1);                                                              \
            }                                                                         \
            sleep_ms(10);                                                             \
        }                                                                             \
    } while (0)

static void null_and_bad_arguments(lq_broker *broker) {
    lq_bridge_builder *b = NULL;
    lq_bridge *br = NULL;
    lq_bridge_stats s;
    s.struct_size = sizeof s;

    lq_bridge_builder_free(NULL);
    lq_bridge_free(NULL);
    EXPECT_MSG(LQ_NULL_POINTER, "url is NULL", lq_bridge_nats_new(NULL, 5, &b));
    EXPECT_MSG(LQ_NULL_POINTER, "out is NULL", lq_bridge_nats_new(S("nats://h:1"), NULL));
    EXPECT(LQ_NULL_POINTER, lq_bridge_builder_forward(NULL, S("q"), S("a.b")));
    EXPECT(LQ_NULL_POINTER, lq_bridge_builder_receive(NULL, S("a.b"), S("q")));
    EXPECT(LQ_NULL_POINTER, lq_bridge_builder_window(NULL, 1));
    EXPECT(LQ_NULL_POINTER, lq_bridge_start(NULL, broker, &br));
    EXPECT(LQ_NULL_POINTER, lq_bridge_get_stats(NULL, &s));
    EXPECT(LQ_NULL_POINTER, lq_bridge_stop(NULL));
    CHECK(b == NULL && br == NULL);

    /* Bad URLs: refused by the call that takes them, nothing connected. */
    const char *bad[] = {"", "nats://a b:4222", "http://127.0.0.1:4222", "nats://h:99999",
                         "nats://h:x", "nats://:4222", "nats://h:1,"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        EXPECT_MSG(LQ_INVALID_ARGUMENT, "bridge URL", lq_bridge_nats_new(S(bad[i]), &b));
        CHECK(b == NULL);
    }
    EXPECT(LQ_INVALID_UTF8, lq_bridge_nats_new((const uint8_t *)"\xff", 1, &b));

    /* Bad settings leave the builder as it was, and usable. */
    b = nats("nats://127.0.0.1:1");
    EXPECT(LQ_INVALID_UTF8, lq_bridge_builder_forward(b, (const uint8_t *)"\xff", 1, S("a.b")));
    EXPECT(LQ_NULL_POINTER, lq_bridge_builder_forward(b, NULL, 3, S("a.b")));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "window", lq_bridge_builder_window(b, 0));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "backoff", lq_bridge_builder_backoff_ms(b, 0, 10));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "backoff", lq_bridge_builder_backoff_ms(b, 20, 10));
    EXPECT(LQ_INVALID_ARGUMENT, lq_bridge_builder_max_age_ms(b, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_bridge_builder_connect_timeout_ms(b, 0));
    EXPECT(LQ_INVALID_ARGUMENT, lq_bridge_builder_identity(b, S("has space")));
    EXPECT(LQ_INVALID_ARGUMENT, lq_bridge_builder_stream(b, S(""), S("a.>")));
    OK(lq_bridge_builder_backoff_ms(b, 10, 100));
    /* No route: start refuses (and consumes the builder). */
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "at least one", lq_bridge_start(b, broker, &br));
    CHECK(br == NULL);

    /* A wildcard where a forward needs one subject. */
    b = nats("nats://127.0.0.1:1");
    OK(lq_bridge_builder_forward(b, S("q"), S("x.*")));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "subject", lq_bridge_start(b, broker, &br));
    /* A queue name the engine refuses. */
    b = nats("nats://127.0.0.1:1");
    OK(lq_bridge_builder_forward(b, S("no space"), S("x.y")));
    EXPECT(LQ_INVALID_NAME, lq_bridge_start(b, broker, &br));
    /* NULL broker or out: the builder is consumed all the same. */
    b = nats("nats://127.0.0.1:1");
    OK(lq_bridge_builder_forward(b, S("q"), S("x.y")));
    EXPECT(LQ_NULL_POINTER, lq_bridge_start(b, NULL, &br));
    b = nats("nats://127.0.0.1:1");
    OK(lq_bridge_builder_forward(b, S("q"), S("x.y")));
    EXPECT(LQ_NULL_POINTER, lq_bridge_start(b, broker, NULL));
    CHECK(br == NULL);
}

/* Nobody listens: LQ_IO naming the URL, within the connect timeout; in the
 * background: start succeeds, the message waits and the error shows. */
static void unreachable(lq_broker *broker) {
    char nobody[64];
    snprintf(nobody, sizeof nobody, "nats://127.0.0.1:%d", free_port());
    lq_bridge_builder *b = nats(nobody);
    lq_bridge *br = NULL;
    OK(lq_bridge_builder_forward(b, S("kept"), S("x.y")));
    OK(lq_bridge_builder_connect_timeout_ms(b, 1500));
    double t0 = now_s();
    EXPECT_MSG(LQ_IO, nobody, lq_bridge_start(b, broker, &br));
    CHECK(br == NULL);
    CHECK(now_s() - t0 < 15);

    b = nats(nobody);
    OK(lq_bridge_builder_forward(b, S("kept"), S("x.y")));
    OK(lq_bridge_builder_connect_in_background(b, true));
    OK(lq_bridge_start(b, broker, &br));
    lq_queue *q = NULL;
    OK(lq_broker_queue(broker, S("kept"), &q));
    lq_message *m = NULL;
    OK(lq_message_new(S("waits"), &m));
    OK(lq_queue_send(q, m, NULL));
    WAIT_UNTIL(br, 15, s.last_error[0] != '\0' && s.last_error_at_ms > 0);
    lq_bridge_stats s = stats_of(br);
    CHECK(!s.connected && s.forwarded == 0 && s.pending_outbound == 1);
    CHECK(s.error_since_ms > 0 && s.error_since_ms <= s.last_error_at_ms);
    OK(lq_bridge_stop(br));
    EXPECT(LQ_INVALID_STATE, lq_bridge_stop(br));
    s = stats_of(br); /* the final counters stay readable */
    CHECK(s.forwarded == 0 && s.pending_outbound == 1);
    lq_bridge_free(br);
    lq_queue_free(q);
}

#define N 300

static void out_and_back(lq_broker *broker) {
    /* A subject no stream takes. */
    lq_bridge_builder *b = nats(url);
    lq_bridge *br = NULL;
    OK(lq_bridge_builder_forward(b, S("jobs"), S("nobody.here")));
    EXPECT_MSG(LQ_NOT_FOUND, "nobody.here", lq_bridge_start(b, broker, &br));
    CHECK(br == NULL);

    /* "jobs" goes out to ctest.jobs, which comes back into "back". */
    b = nats(url);
    OK(lq_bridge_builder_stream(b, S("CTEST"), S("ctest.jobs")));
    OK(lq_bridge_builder_stream(b, S("CTEST"), S("ctest.other")));
    OK(lq_bridge_builder_forward(b, S("jobs"), S("ctest.jobs")));
    OK(lq_bridge_builder_receive(b, S("ctest.jobs"), S("back")));
    OK(lq_bridge_builder_receive_durable(b, S("ctest.other"), S("other"), S("c-other")));
    OK(lq_bridge_builder_window(b, 32));
    OK(lq_bridge_builder_backoff_ms(b, 10, 500));
    OK(lq_bridge_builder_identity(b, S("ctest")));
    OK(lq_bridge_builder_duplicate_window_ms(b, 60000));
    OK(lq_bridge_builder_ack_timeout_ms(b, 5000));
    OK(lq_bridge_builder_max_age_ms(b, 3600 * 1000));
    OK(lq_bridge_start(b, broker, &br));
    CHECK(br != NULL);

    /* One forwarder per queue. */
    lq_bridge *second = NULL;
    b = nats(url);
    OK(lq_bridge_builder_forward(b, S("jobs"), S("ctest.jobs")));
    EXPECT_MSG(LQ_ALREADY_EXISTS, "jobs", lq_bridge_start(b, broker, &second));
    CHECK(second == NULL);

    lq_queue *jobs = NULL, *back = NULL;
    OK(lq_broker_queue(broker, S("jobs"), &jobs));
    OK(lq_broker_queue(broker, S("back"), &back));
    for (int i = 0; i < N; i++) {
        char body[32], corr[32];
        snprintf(body, sizeof body, "job-%d", i);
        snprintf(corr, sizeof corr, "corr-%d", i);
        lq_message *m = NULL;
        OK(lq_message_new(S(body), &m));
        OK(lq_message_set_name(m, S("greet")));
        OK(lq_message_set_header(m, S("k"), S(body)));
        OK(lq_message_set_correlation_id(m, S(corr)));
        OK(lq_queue_send(jobs, m, NULL));
    }
    WAIT_UNTIL(br, 60, s.forwarded == N && s.received == N);
    lq_bridge_stats s = stats_of(br);
    CHECK(s.connected);
    CHECK(s.dead_lettered == 0 && s.pending_outbound == 0);

    /* Every message came back once, in order, with its fields. */
    for (int i = 0; i < N; i++) {
        char body[32], corr[32];
        snprintf(body, sizeof body, "job-%d", i);
        snprintf(corr, sizeof corr, "corr-%d", i);
        lq_delivery *d = NULL;
        OK(lq_queue_receive_timeout(back, 5000, &d));
        const uint8_t *p;
        size_t n;
        OK(lq_delivery_body(d, &p, &n));
        CHECK(eq(p, n, body));
        OK(lq_delivery_name(d, &p, &n));
        CHECK(eq(p, n, "greet"));
        OK(lq_delivery_header(d, S("k"), &p, &n));
        CHECK(eq(p, n, body));
        OK(lq_delivery_correlation_id(d, &p, &n));
        CHECK(eq(p, n, corr));
        OK(lq_delivery_ack(d));
        lq_delivery_free(d);
    }
    lq_delivery *extra = NULL;
    EXPECT(LQ_EMPTY, lq_queue_receive_timeout(back, 0, &extra));

    /* An older caller's struct (up to `dead_lettered`): nothing written past it. */
    unsigned char raw[sizeof(lq_bridge_stats)];
    memset(raw, 0xAB, sizeof raw);
    size_t old = offsetof(lq_bridge_stats, dead_lettered) + sizeof(uint64_t);
    memcpy(raw, &old, sizeof old);
    OK(lq_bridge_get_stats(br, (lq_bridge_stats *)(void *)raw));
    uint64_t fwd;
    memcpy(&fwd, raw + offsetof(lq_bridge_stats, forwarded), sizeof fwd);
    CHECK(fwd == N);
    for (size_t i = old; i < sizeof raw; i++) CHECK(raw[i] == 0xAB);
    size_t tiny = sizeof(size_t);
    memcpy(raw, &tiny, sizeof tiny);
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "struct_size",
               lq_bridge_get_stats(br, (lq_bridge_stats *)(void *)raw));

    /* A forked child: the bridge runs in the parent only. Its stats are
     * LQ_FORKED; stop and free let go of it without touching the parent's.
     * The verdict comes through a pipe, not the exit status: under valgrind
     * the child reports as lost what only the parent's threads point to (as
     * in test_fork.c), and valgrind's error exit code would hide it. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        lq_bridge_stats cs;
        cs.struct_size = sizeof cs;
        int verdict = lq_bridge_get_stats(br, &cs) == LQ_FORKED ? 0 : 1;
        if (lq_bridge_stop(br) != LQ_OK) verdict = 2;
        lq_bridge_free(br);
        ssize_t w = write(fds[1], &verdict, sizeof verdict);
        _exit(w == (ssize_t)sizeof verdict ? 0 : 3); /* not exit(): no atexit here */
    }
    close(fds[1]);
    int verdict = -1;
    CHECK(read(fds[0], &verdict, sizeof verdict) == (ssize_t)sizeof verdict);
    close(fds[0]);
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status)); /* not killed (a crash, an abort) */
    CHECK(verdict == 0);
    lq_message *after = NULL;
    OK(lq_message_new(S("after the fork"), &after));
    OK(lq_queue_send(jobs, after, NULL));
    WAIT_UNTIL(br, 30, s.forwarded == N + 1 && s.received == N + 1);
    lq_delivery *d = NULL;
    OK(lq_queue_receive_timeout(back, 5000, &d));
    const uint8_t *p;
    size_t n;
    OK(lq_delivery_body(d, &p, &n));
    CHECK(eq(p, n, "after the fork"));
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);

    OK(lq_bridge_stop(br));
    s = stats_of(br);
    CHECK(s.forwarded == N + 1 && s.received == N + 1);
    lq_bridge_free(br);

    /* Stopped: the queue can be forwarded again. Then the broker closes under
     * a running bridge: its routes end, and freeing it returns promptly. */
    b = nats(url);
    OK(lq_bridge_builder_forward(b, S("jobs"), S("ctest.jobs")));
    OK(lq_bridge_start(b, broker, &br));
    OK(lq_broker_close(broker));
    double t0 = now_s();
    lq_bridge_free(br);
    CHECK(now_s() - t0 < 15);
    /* A closed broker: LQ_CLOSED. */
    br = NULL;
    b = nats(url);
    OK(lq_bridge_builder_forward(b, S("jobs"), S("ctest.jobs")));
    EXPECT(LQ_CLOSED, lq_bridge_start(b, broker, &br));
    CHECK(br == NULL);
    lq_queue_free(jobs);
    lq_queue_free(back);
}

int main(void) {
    lq_broker *broker = NULL;
    OK(lq_broker_open(NULL, &broker));
    null_and_bad_arguments(broker);
    unreachable(broker);
    start_server();
    out_and_back(broker);
    lq_broker_free(broker);
    stop_server();
    printf("test_bridge: ok\n");
    return 0;
}
