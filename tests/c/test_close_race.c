/* lq_queue_close and lq_rpc_client_close racing the calls that wait in the
 * handle (a receive with and without a timeout, a batch receive, a send to a full
 * queue that blocks, an RPC call, a publish to a full subscription) from other threads: every waiter returns
 * LQ_CLOSED, nothing is freed while a call is inside (the handle is freed after
 * the threads are joined, as docs/c-api.md says), and under ASan / valgrind
 * nothing is read after it was freed. Run by make test-c, test-sanitize and
 * test-valgrind. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include <pthread.h>
#include <time.h>

#define ROUNDS 40
#define WAITERS 6

typedef struct {
    lq_queue *full;  /* capacity 1, holding one message: sends block */
    lq_queue *empty; /* receives wait */
    lq_rpc_client *rpc;
    lq_topic *topic; /* its subscription is `full` */
    int which;
    lq_status got;
} waiter;

static void *wait_in(void *arg) {
    waiter *w = arg;
    lq_delivery *d = NULL;
    lq_delivery *batch[4];
    size_t n = 0;
    lq_message *m = NULL;
    switch (w->which) {
    case 0:
        w->got = lq_queue_receive_timeout(w->empty, 30000, &d);
        break;
    case 1:
        w->got = lq_queue_receive(w->empty, &d);
        break;
    case 2:
        w->got = lq_queue_receive_batch(w->empty, 4, LQ_WAIT_FOREVER, batch, &n);
        break;
    case 3:
        w->got = lq_queue_send_bytes(w->full, S("blocked"), NULL);
        break;
    case 4:
        if (lq_message_new(S("request"), &m) != LQ_OK) {
            w->got = LQ_PANIC;
            break;
        }
        w->got = lq_rpc_call(w->rpc, S("nobody-serves"), m, 30000, &d);
        break;
    default:
        if (lq_message_new(S("news"), &m) != LQ_OK) {
            w->got = LQ_PANIC;
            break;
        }
        w->got = lq_topic_publish(w->topic, m, &n);
        break;
    }
    if (w->got == LQ_OK) /* nothing should come; free what did so the test can say so */
        lq_delivery_free(d);
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void) {
    lq_broker_options *bo = NULL;
    lq_broker *b = NULL;
    OK(lq_broker_options_new(&bo));
    OK(lq_broker_open(bo, &b));
    lq_broker_options_free(bo);
    lq_namespace *ns = NULL;
    OK(lq_broker_namespace(b, S("race"), &ns));
    lq_queue_options *qo = NULL;
    OK(lq_queue_options_new(&qo));
    OK(lq_queue_options_set_max_messages(qo, 1));
    OK(lq_queue_options_set_on_full(qo, LQ_ON_FULL_BLOCK, 0));
    lq_queue *serve = NULL;
    OK(lq_namespace_queue(ns, S("nobody-serves"), &serve));

    for (int round = 0; round < ROUNDS; round++) {
        char name[32];
        snprintf(name, sizeof name, "full%d", round);
        waiter w[WAITERS];
        memset(w, 0, sizeof w);
        lq_queue *full = NULL, *empty = NULL;
        lq_rpc_client *rpc = NULL;
        OK(lq_namespace_create_queue(ns, S(name), qo, &full));
        OK(lq_queue_send_bytes(full, S("x"), NULL));
        snprintf(name, sizeof name, "empty%d", round);
        OK(lq_namespace_queue(ns, S(name), &empty));
        OK(lq_rpc_client_new(ns, &rpc));
        lq_topic *topic = NULL;
        snprintf(name, sizeof name, "news%d", round);
        OK(lq_namespace_topic(ns, S(name), &topic));
        snprintf(name, sizeof name, "full%d", round);
        OK(lq_topic_subscribe(topic, S(name), NULL));
        pthread_t t[WAITERS];
        for (int i = 0; i < WAITERS; i++) {
            w[i].full = full;
            w[i].empty = empty;
            w[i].rpc = rpc;
            w[i].topic = topic;
            w[i].which = i;
            CHECK(pthread_create(&t[i], NULL, wait_in, &w[i]) == 0);
        }
        /* Some rounds close before the waiters sleep, some while they do. */
        sleep_ms(round % 4 * 5);
        OK(lq_queue_close(full));
        OK(lq_queue_close(empty));
        OK(lq_rpc_client_close(rpc));
        OK(lq_topic_close(topic));
        OK(lq_queue_close(empty)); /* idempotent */
        for (int i = 0; i < WAITERS; i++) {
            CHECK(pthread_join(t[i], NULL) == 0);
            if (w[i].got != LQ_CLOSED) {
                fprintf(stderr, "round %d, waiter %d: %s, expected LQ_CLOSED\n", round, i,
                        lq_status_str(w[i].got));
                return 1;
            }
        }
        /* Later calls on the closed handles: LQ_CLOSED; the queue itself goes on. */
        lq_delivery *d = NULL;
        bool closed = false;
        EXPECT(LQ_CLOSED, lq_queue_try_receive(empty, &d));
        EXPECT(LQ_CLOSED, lq_queue_send_bytes(full, S("y"), NULL));
        OK(lq_queue_is_closed(full, &closed));
        CHECK(closed);
        lq_message *m = NULL;
        OK(lq_message_new(S("late"), &m));
        EXPECT(LQ_CLOSED, lq_rpc_cast(rpc, S("nobody-serves"), m, NULL));
        OK(lq_message_new(S("late"), &m));
        EXPECT(LQ_CLOSED, lq_topic_publish(topic, m, NULL));
        lq_queue *again = NULL;
        snprintf(name, sizeof name, "full%d", round);
        OK(lq_namespace_get_queue(ns, S(name), &again));
        OK(lq_queue_try_receive(again, &d));
        OK(lq_delivery_ack(d));
        lq_delivery_free(d);
        /* Freed only now, every call on them having returned. */
        lq_queue_free(again);
        lq_queue_free(full);
        lq_queue_free(empty);
        lq_rpc_client_free(rpc);
        lq_topic_free(topic);
    }
    /* The requests of the RPC calls are still waiting there. */
    uint64_t purged = 0;
    OK(lq_queue_purge(serve, &purged));
    lq_queue_free(serve);
    lq_queue_options_free(qo);
    lq_namespace_free(ns);
    OK(lq_broker_close(b));
    lq_broker_free(b);
    printf("test_close_race: %d rounds of %d waiters, every one woken with LQ_CLOSED\n", ROUNDS,
           WAITERS);
    return 0;
}
