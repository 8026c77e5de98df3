/* A forked child cannot use its parent's broker (issue 13, item 10): every call
 * on a handle inherited through fork() returns LQ_FORKED and writes nothing; the
 * child may open a broker of its own; afterwards the parent's journal holds every
 * parent message and reopens without damage. The child reports through its exit
 * status (the number of the check that failed), which the parent checks. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "check.h"
#include <sys/wait.h>
#include <unistd.h>

static lq_broker *open_dir(const char *dir) {
    lq_broker_options *o = NULL;
    lq_broker *b = NULL;
    OK(lq_broker_options_new(&o));
    OK(lq_broker_options_set_data_dir(o, S(dir)));
    OK(lq_broker_open(o, &b));
    lq_broker_options_free(o);
    return b;
}

static lq_status send_persistent(lq_queue *q, const char *body) {
    lq_message *m = NULL;
    lq_status s = lq_message_new(S(body), &m);
    if (s != LQ_OK) return s;
    s = lq_message_set_persistent(m, true);
    if (s != LQ_OK) {
        lq_message_free(m);
        return s;
    }
    return lq_queue_send(q, m, NULL); /* consumes m */
}

static void send_range(lq_queue *q, int from, int to) {
    char body[32];
    for (int i = from; i < to; i++) {
        snprintf(body, sizeof body, "parent-%03d", i);
        OK(send_persistent(q, body));
    }
}

/* In the child: returns 0, or the number of the failed check. No exit() (no
 * atexit handler of the parent's runs here): the caller _exit()s. */
#define CHILD(n, cond) \
    do {               \
        if (!(cond)) return (n); \
    } while (0)

/* A topic of the parent's (subscription "audit"), inherited by the child. */
static lq_topic *g_topic = NULL;

static int child(lq_broker *b, lq_queue *q, lq_delivery *held, const char *own) {
    lq_queue *q2 = NULL;
    lq_namespace *ns = NULL;
    lq_delivery *d = NULL;
    lq_queue_stats st;
    CHILD(1, send_persistent(q, "child") == LQ_FORKED);
    CHILD(2, strstr(lq_last_error_message(), "fork") != NULL);
    CHILD(3, lq_queue_try_receive(q, &d) == LQ_FORKED && d == NULL);
    CHILD(4, lq_broker_queue(b, S("jobs"), &q2) == LQ_FORKED && q2 == NULL);
    CHILD(5, lq_broker_get_namespace(b, S("default"), &ns) == LQ_FORKED && ns == NULL);
    CHILD(6, lq_broker_flush(b) == LQ_FORKED);
    CHILD(7, lq_queue_get_stats(q, &st) == LQ_FORKED);
    CHILD(8, lq_delivery_ack(held) == LQ_FORKED);
    CHILD(9, strcmp(lq_status_str(LQ_FORKED), "LQ_FORKED") == 0);
    lq_strings *names = NULL;
    CHILD(19, lq_broker_list_namespaces(b, &names) == LQ_FORKED && names == NULL);
    /* Definitions: nothing reaches the parent's journal (checked after the reopen). */
    lq_topic_stats ts;
    ts.struct_size = sizeof ts;
    CHILD(20, lq_topic_get_stats(g_topic, &ts) == LQ_FORKED);
    CHILD(21, lq_topic_subscribe(g_topic, S("child-sub"), NULL) == LQ_FORKED);
    CHILD(22, lq_topic_unsubscribe(g_topic, S("audit")) == LQ_FORKED);
    lq_topic_free(g_topic);
    /* Closing and freeing the inherited handles touches nothing of the parent's. */
    lq_delivery_free(held);
    lq_queue_free(q);
    CHILD(10, lq_broker_close(b) == LQ_OK);
    lq_broker_free(b);
    /* A broker of its own works. */
    lq_broker *mine = NULL;
    lq_broker_options *o = NULL;
    CHILD(11, lq_broker_options_new(&o) == LQ_OK);
    CHILD(12, lq_broker_options_set_data_dir(o, S(own)) == LQ_OK);
    CHILD(13, lq_broker_open(o, &mine) == LQ_OK);
    lq_broker_options_free(o);
    CHILD(14, lq_broker_queue(mine, S("jobs"), &q2) == LQ_OK);
    CHILD(15, send_persistent(q2, "mine") == LQ_OK);
    CHILD(16, lq_queue_try_receive(q2, &d) == LQ_OK);
    const uint8_t *p = NULL;
    size_t n = 0;
    CHILD(17, lq_delivery_body(d, &p, &n) == LQ_OK && n == 4 && memcmp(p, "mine", 4) == 0);
    CHILD(18, lq_delivery_ack(d) == LQ_OK);
    lq_delivery_free(d);
    lq_queue_free(q2);
    lq_broker_free(mine);
    return 0;
}

int main(void) {
    char dir[] = "/tmp/lq_fork_parent_XXXXXX";
    char own[] = "/tmp/lq_fork_child_XXXXXX";
    CHECK(mkdtemp(dir) != NULL && mkdtemp(own) != NULL);
    lq_broker *b = open_dir(dir);
    lq_queue *q = NULL;
    OK(lq_broker_queue(b, S("jobs"), &q));
    send_range(q, 0, 50);
    OK(lq_broker_flush(b));
    lq_delivery *held = NULL;
    OK(lq_queue_try_receive(q, &held)); /* parent-000, leased across the fork */
    lq_namespace *dns = NULL;
    OK(lq_broker_namespace(b, S("default"), &dns));
    OK(lq_namespace_topic(dns, S("events"), &g_topic));
    OK(lq_topic_subscribe(g_topic, S("audit"), NULL));
    lq_namespace_free(dns);

    /* The child's verdict comes through a pipe, not its exit status: under
     * valgrind a forked child reports as lost what only the parent's threads
     * (which it does not have) point to, and valgrind's error exit code would
     * hide the check number. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int code = child(b, q, held, own);
        ssize_t w = write(fds[1], &code, sizeof code);
        _exit(w == (ssize_t)sizeof code ? 0 : 2);
    }
    close(fds[1]);
    int code = -1;
    CHECK(read(fds[0], &code, sizeof code) == (ssize_t)sizeof code);
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status)); /* not killed (a crash, an abort) */
    if (code != 0) {
        fprintf(stderr, "test_fork: child check %d failed\n", code);
        return 1;
    }

    /* The parent goes on: acks the held message, sends 50 more, closes. */
    OK(lq_delivery_ack(held));
    lq_delivery_free(held);
    send_range(q, 50, 100);
    lq_queue_free(q);
    lq_topic_free(g_topic);
    OK(lq_broker_close(b));
    lq_broker_free(b);

    /* Reopened: parent-001 .. parent-099 in order, no damage, nothing of the child's. */
    b = open_dir(dir);
    lq_recovery_report r;
    OK(lq_broker_recovery_report(b, &r));
    CHECK(r.damage_count == 0 && r.segments_damaged == 0 && r.bytes_cut == 0);
    CHECK(r.messages_recovered == 99);
    OK(lq_broker_queue(b, S("jobs"), &q));
    char want[32];
    for (int i = 1; i < 100; i++) {
        lq_delivery *d = NULL;
        const uint8_t *p = NULL;
        size_t n = 0;
        OK(lq_queue_try_receive(q, &d));
        OK(lq_delivery_body(d, &p, &n));
        snprintf(want, sizeof want, "parent-%03d", i);
        CHECK(n == strlen(want) && memcmp(p, want, n) == 0);
        OK(lq_delivery_ack(d));
        lq_delivery_free(d);
    }
    lq_delivery *none = NULL;
    EXPECT(LQ_EMPTY, lq_queue_try_receive(q, &none));
    lq_queue_free(q);
    /* The topic's one subscription is the parent's "audit". */
    OK(lq_broker_namespace(b, S("default"), &dns));
    OK(lq_namespace_topic(dns, S("events"), &g_topic));
    lq_strings *subs = NULL;
    size_t nsubs = 0;
    OK(lq_topic_subscriptions(g_topic, &subs));
    OK(lq_strings_len(subs, &nsubs));
    CHECK(nsubs == 1);
    lq_strings_free(subs);
    lq_topic_free(g_topic);
    lq_namespace_free(dns);
    lq_broker_free(b);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, own);
    CHECK(system(cmd) == 0);
    printf("test_fork: all checks passed\n");
    return 0;
}
