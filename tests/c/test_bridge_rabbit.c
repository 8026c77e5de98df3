/* The bridge to RabbitMQ from C (lq_bridge_rabbitmq_new and the shared
 * lq_bridge_builder_* setters), against a private rabbitmq-server that this
 * test starts on 127.0.0.1 with its own ports and a temporary directory
 * (benches/rabbitmq.sh, run from the repository root: its start waits at most
 * 120 s) and stops at exit, on a failed CHECK too. The bridge declares nothing
 * on the server, so the test declares its queue (benches/rabbitmq.sh queue).
 *
 * Messages go out (a local queue forwarded through the default exchange to
 * the remote queue ctest.back, by lq_bridge_builder_forward_exchange) and come
 * back (ctest.back received into another local queue), with their fields; the
 * stats count them; then the error paths: bad URLs, the NATS-only setters on a
 * RabbitMQ builder and forward_exchange on a NATS one, a missing exchange and
 * a missing remote queue (LQ_NOT_FOUND), nobody listening (LQ_IO). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "check.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char url[192];
static pid_t owner = -1;

static void stop_rabbit(void) {
    if (getpid() != owner || dir[0] == '\0') return;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "timeout 90 benches/rabbitmq.sh stop %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "stopping RabbitMQ in %s failed\n", dir);
    dir[0] = '\0';
}

static void start_rabbit(void) {
    snprintf(dir, sizeof dir, "/tmp/lq-ctest-rabbit.%d", (int)getpid());
    owner = getpid();
    atexit(stop_rabbit);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "timeout 150 benches/rabbitmq.sh start %s", dir);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char line[128] = "";
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    CHECK(got != NULL && rc == 0);
    /* rabbit://guest:guest@127.0.0.1:PORT/ -> amqp://guest:guest@127.0.0.1:PORT/%2f */
    line[strcspn(line, "\n")] = '\0';
    CHECK(strncmp(line, "rabbit://", 9) == 0);
    snprintf(url, sizeof url, "amqp://%s%%2f", line + 9);
    snprintf(cmd, sizeof cmd, "benches/rabbitmq.sh queue %s ctest.back", dir);
    CHECK(system(cmd) == 0);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static lq_bridge_builder *rabbit(const char *u) {
    lq_bridge_builder *b = NULL;
    OK(lq_bridge_rabbitmq_new(S(u), &b));
    CHECK(b != NULL);
    return b;
}

static lq_bridge_stats stats_of(const lq_bridge *br) {
    lq_bridge_stats s;
    memset(&s, 0xAB, sizeof s);
    s.struct_size = sizeof s;
    OK(lq_bridge_get_stats(br, &s));
    return s;
}

#define WAIT_UNTIL(br, secs, cond)                                                       \
    do {                                                                                 \
        double end_ = now_s() + (secs);                                                  \
        for (;;) {                                                                       \
            lq_bridge_stats s = stats_of(br);                                            \
            if (cond) break;                                                             \
            if (now_s() > end_) {                                                        \
                fprintf(stderr, "%s:%d: not within %d s: %s (last error \"%s\")\n",      \
                        __FILE__, __LINE__, (int)(secs), #cond, s.last_error);           \
                exit(1);                                                                 \
            }                                                                            \
            sleep_ms(10);                                                                \
        }                                                                                \
    } while (0)

/* Everything that needs no server. */
static void arguments(lq_broker *broker) {
    lq_bridge_builder *b = NULL;
    lq_bridge *br = NULL;
    EXPECT_MSG(LQ_NULL_POINTER, "url is NULL", lq_bridge_rabbitmq_new(NULL, 5, &b));
    EXPECT_MSG(LQ_NULL_POINTER, "out is NULL", lq_bridge_rabbitmq_new(S("amqp://h:1/"), NULL));
    const char *bad[] = {"", "nats://127.0.0.1:4222", "amqps://h:1", "amqp://", "amqp://u:p@h:1/%zz"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        EXPECT_MSG(LQ_INVALID_ARGUMENT, "bridge URL", lq_bridge_rabbitmq_new(S(bad[i]), &b));
        CHECK(b == NULL);
    }
    EXPECT(LQ_INVALID_UTF8, lq_bridge_rabbitmq_new((const uint8_t *)"\xff", 1, &b));
    /* The password stays out of the message. */
    EXPECT(LQ_INVALID_ARGUMENT, lq_bridge_rabbitmq_new(S("amqp://u:secret@h:1/%zz"), &b));
    CHECK(strstr(lq_last_error_message(), "secret") == NULL);

    /* The JetStream setters refuse a RabbitMQ builder, which stays usable. */
    b = rabbit("amqp://guest:guest@127.0.0.1:1/");
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "lq_bridge_builder_stream does not apply to a RabbitMQ",
               lq_bridge_builder_stream(b, S("S"), S("a.b")));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "lq_bridge_builder_receive_durable does not apply",
               lq_bridge_builder_receive_durable(b, S("rq"), S("q"), S("d")));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "lq_bridge_builder_duplicate_window_ms does not apply",
               lq_bridge_builder_duplicate_window_ms(b, 1000));
    EXPECT(LQ_NULL_POINTER, lq_bridge_builder_forward_exchange(NULL, S("q"), S("x"), S("k")));
    EXPECT(LQ_NULL_POINTER, lq_bridge_builder_forward_exchange(b, S("q"), NULL, 1, S("k")));
    EXPECT(LQ_INVALID_ARGUMENT, lq_bridge_builder_window(b, 0));
    OK(lq_bridge_builder_window(b, 8));
    /* No route. */
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "at least one", lq_bridge_start(b, broker, &br));
    /* An exchange with '/'. */
    b = rabbit("amqp://guest:guest@127.0.0.1:1/");
    OK(lq_bridge_builder_forward_exchange(b, S("q"), S("a/b"), S("k")));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "a/b", lq_bridge_start(b, broker, &br));
    CHECK(br == NULL);

    /* forward_exchange on a NATS builder. */
    OK(lq_bridge_nats_new(S("nats://127.0.0.1:1"), &b));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "does not apply to a NATS",
               lq_bridge_builder_forward_exchange(b, S("q"), S("x"), S("k")));
    lq_bridge_builder_free(b);
}

static void unreachable(lq_broker *broker) {
    lq_bridge_builder *b = rabbit("amqp://guest:guest@127.0.0.1:1/");
    lq_bridge *br = NULL;
    OK(lq_bridge_builder_forward(b, S("kept"), S("ctest.back")));
    OK(lq_bridge_builder_connect_timeout_ms(b, 1500));
    double t0 = now_s();
    EXPECT_MSG(LQ_IO, "127.0.0.1:1", lq_bridge_start(b, broker, &br));
    CHECK(br == NULL && now_s() - t0 < 15);
}

#define N 200

static void out_and_back(lq_broker *broker) {
    lq_bridge_builder *b = rabbit(url);
    lq_bridge *br = NULL;
    OK(lq_bridge_builder_forward_exchange(b, S("jobs"), S("no.such.exchange"), S("k")));
    EXPECT_MSG(LQ_NOT_FOUND, "no.such.exchange", lq_bridge_start(b, broker, &br));
    b = rabbit(url);
    OK(lq_bridge_builder_receive(b, S("no.such.queue"), S("back")));
    EXPECT_MSG(LQ_NOT_FOUND, "no.such.queue", lq_bridge_start(b, broker, &br));
    CHECK(br == NULL);

    /* "jobs" -> default exchange, key ctest.back -> "back"; "more" the same
     * way through lq_bridge_builder_forward (the default exchange). */
    b = rabbit(url);
    OK(lq_bridge_builder_forward_exchange(b, S("jobs"), S(""), S("ctest.back")));
    OK(lq_bridge_builder_forward(b, S("more"), S("ctest.back")));
    OK(lq_bridge_builder_receive(b, S("ctest.back"), S("back")));
    OK(lq_bridge_builder_window(b, 32));
    OK(lq_bridge_builder_backoff_ms(b, 10, 500));
    OK(lq_bridge_builder_identity(b, S("ctest")));
    OK(lq_bridge_builder_ack_timeout_ms(b, 5000));
    OK(lq_bridge_start(b, broker, &br));

    lq_queue *jobs = NULL, *more = NULL, *back = NULL;
    OK(lq_broker_queue(broker, S("jobs"), &jobs));
    OK(lq_broker_queue(broker, S("more"), &more));
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
    lq_message *m = NULL;
    OK(lq_message_new(S("more"), &m));
    OK(lq_queue_send(more, m, NULL));
    WAIT_UNTIL(br, 60, s.forwarded == N + 1 && s.received == N + 1);
    lq_bridge_stats s = stats_of(br);
    CHECK(s.connected && s.dead_lettered == 0 && s.pending_outbound == 0);

    int seen_more = 0, next = 0;
    for (int i = 0; i < N + 1; i++) {
        lq_delivery *d = NULL;
        OK(lq_queue_receive_timeout(back, 5000, &d));
        const uint8_t *p;
        size_t n;
        OK(lq_delivery_body(d, &p, &n));
        if (eq(p, n, "more")) {
            seen_more++;
        } else {
            char body[32], corr[32];
            snprintf(body, sizeof body, "job-%d", next);
            snprintf(corr, sizeof corr, "corr-%d", next);
            next++;
            CHECK(eq(p, n, body)); /* one forwarded queue: in order */
            OK(lq_delivery_name(d, &p, &n));
            CHECK(eq(p, n, "greet"));
            OK(lq_delivery_header(d, S("k"), &p, &n));
            CHECK(eq(p, n, body));
            OK(lq_delivery_correlation_id(d, &p, &n));
            CHECK(eq(p, n, corr));
        }
        OK(lq_delivery_ack(d));
        lq_delivery_free(d);
    }
    CHECK(seen_more == 1 && next == N);
    lq_delivery *extra = NULL;
    EXPECT(LQ_EMPTY, lq_queue_receive_timeout(back, 0, &extra));

    OK(lq_bridge_stop(br));
    EXPECT(LQ_INVALID_STATE, lq_bridge_stop(br));
    s = stats_of(br);
    CHECK(s.forwarded == N + 1 && s.received == N + 1);
    lq_bridge_free(br);
    lq_queue_free(jobs);
    lq_queue_free(more);
    lq_queue_free(back);
}

int main(void) {
    lq_broker *broker = NULL;
    OK(lq_broker_open(NULL, &broker));
    arguments(broker);
    unreachable(broker);
    start_rabbit();
    out_and_back(broker);
    lq_broker_free(broker);
    stop_rabbit();
    printf("test_bridge_rabbit: ok\n");
    return 0;
}
