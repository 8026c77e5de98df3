/* Two processes, one data directory (issue 14): the parent opens it and hosts
 * it; a child (this program run again, through fork + exec) opens the same
 * directory and attaches. The child receives and acks what the parent sent,
 * in order, and sends back; both check lq_broker_is_attached and
 * lq_broker_host_info (the host's pid, the attached client's pid, uid and
 * leases); an exclusive open of a hosted directory is LQ_LOCKED; and when the
 * child is SIGKILLed holding a lease, its message is back in the queue at
 * once (not after the 30 s lease). Also every new call's argument checks.
 * The child reports on a pipe, one line per step. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* mkdtemp */
#include "check.h"
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 200

static lq_broker *open_dir(const char *dir, bool exclusive, lq_status want) {
    lq_broker_options *o = NULL;
    lq_broker *b = NULL;
    OK(lq_broker_options_new(&o));
    OK(lq_broker_options_set_data_dir(o, S(dir)));
    OK(lq_broker_options_set_exclusive(o, exclusive));
    EXPECT(want, lq_broker_open(o, &b));
    lq_broker_options_free(o);
    return b;
}

static lq_queue *queue(lq_broker *b, const char *name) {
    lq_queue *q = NULL;
    OK(lq_broker_queue(b, S(name), &q));
    return q;
}

static void send_text(lq_queue *q, const char *body, bool persistent) {
    lq_message *m = NULL;
    OK(lq_message_new(S(body), &m));
    OK(lq_message_set_persistent(m, persistent));
    OK(lq_queue_send(q, m, NULL)); /* consumes m */
}

/* Receives one message (waiting at most 5 s) and checks its body. */
static lq_delivery *expect_body(lq_queue *q, const char *want) {
    lq_delivery *d = NULL;
    const uint8_t *p = NULL;
    size_t n = 0;
    OK(lq_queue_receive_timeout(q, 5000, &d));
    OK(lq_delivery_body(d, &p, &n));
    if (!eq(p, n, want)) {
        fprintf(stderr, "expected \"%s\", got \"%.*s\"\n", want, (int)n, (const char *)p);
        exit(1);
    }
    return d;
}

static lq_host_info host_info(lq_broker *b, lq_host_client *clients, size_t cap) {
    lq_host_info h;
    memset(&h, 0xff, sizeof h);
    h.struct_size = sizeof h;
    OK(lq_broker_host_info(b, &h, clients, cap, sizeof *clients));
    CHECK(h.struct_size == sizeof h);
    return h;
}

/* The child: attached to its parent. Failures exit(1) with a message (CHECK);
 * progress goes to `out` (the pipe to the parent). */
static int child(const char *dir, FILE *out) {
    lq_broker *b = open_dir(dir, false, LQ_OK);
    bool attached = false;
    OK(lq_broker_is_attached(b, &attached));
    CHECK(attached);
    lq_host_client c[4];
    lq_host_info h = host_info(b, c, 4);
    CHECK(h.pid == (uint32_t)getppid() && h.takeovers == 0);
    CHECK(h.clients >= 1);
    bool me = false;
    for (uint64_t i = 0; i < h.clients && i < 4; i++)
        me |= c[i].pid == (uint32_t)getpid() && c[i].uid == (uint32_t)getuid() && c[i].since > 0;
    CHECK(me);
    /* Not exclusive while another process hosts it. */
    CHECK(open_dir(dir, true, LQ_LOCKED) == NULL);

    /* Everything the parent sent, in its order, acked one by one. */
    lq_queue *jobs = queue(b, "jobs");
    char want[32];
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof want, "job-%03d", i);
        lq_delivery *d = expect_body(jobs, want);
        OK(lq_delivery_ack(d));
        lq_delivery_free(d);
    }
    lq_delivery *none = NULL;
    EXPECT(LQ_EMPTY, lq_queue_try_receive(jobs, &none));
    lq_queue *replies = queue(b, "replies");
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof want, "reply-%03d", i);
        send_text(replies, want, true);
    }
    OK(lq_broker_flush(b)); /* on the host's disk */
    fprintf(out, "consumed\n");
    fflush(out);

    /* Holds one lease, says so, and waits to be killed. */
    lq_queue *held = queue(b, "held");
    lq_delivery *d = expect_body(held, "precious");
    fprintf(out, "holding\n");
    fflush(out);
    for (;;)
        pause();
    (void)d;
    return 0;
}

/* The argument checks of the new calls, on an in-memory broker. */
static void test_arguments(void) {
    lq_broker *mem = NULL;
    OK(lq_broker_open(NULL, &mem));
    bool attached = true;
    EXPECT(LQ_NULL_POINTER, lq_broker_is_attached(NULL, &attached));
    EXPECT(LQ_NULL_POINTER, lq_broker_is_attached(mem, NULL));
    OK(lq_broker_is_attached(mem, &attached));
    CHECK(!attached);
    lq_host_info h;
    h.struct_size = sizeof h;
    EXPECT_MSG(LQ_INVALID_STATE, "share", lq_broker_host_info(mem, &h, NULL, 0, 0));
    EXPECT(LQ_NULL_POINTER, lq_broker_host_info(NULL, &h, NULL, 0, 0));
    EXPECT(LQ_NULL_POINTER, lq_broker_host_info(mem, NULL, NULL, 0, 0));
    h.struct_size = 0;
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "struct_size", lq_broker_host_info(mem, &h, NULL, 0, 0));
    h.struct_size = sizeof h;
    lq_host_client c[2];
    EXPECT(LQ_NULL_POINTER, lq_broker_host_info(mem, &h, NULL, 2, sizeof c[0]));
    EXPECT_MSG(LQ_INVALID_ARGUMENT, "client_size", lq_broker_host_info(mem, &h, c, 2, 4));
    OK(lq_broker_close(mem));
    EXPECT(LQ_CLOSED, lq_broker_is_attached(mem, &attached));
    lq_broker_free(mem);

    lq_broker_options *o = NULL;
    OK(lq_broker_options_new(&o));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_exclusive(NULL, true));
    uint32_t uids[2] = {0, 12345};
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_allow_uids(NULL, uids, 2));
    EXPECT(LQ_NULL_POINTER, lq_broker_options_set_allow_uids(o, NULL, 2));
    OK(lq_broker_options_set_allow_uids(o, uids, 2));
    OK(lq_broker_options_set_allow_uids(o, NULL, 0));
    OK(lq_broker_options_set_exclusive(o, true));
    lq_broker_options_free(o);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "child") == 0) {
        FILE *out = fdopen(3, "w");
        CHECK(out != NULL);
        return child(argv[2], out);
    }
    test_arguments();

    char dir[] = "/tmp/lq_multiprocess_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    lq_broker *b = open_dir(dir, false, LQ_OK);
    bool attached = true;
    OK(lq_broker_is_attached(b, &attached));
    CHECK(!attached);
    lq_host_info h = host_info(b, NULL, 0);
    CHECK(h.pid == (uint32_t)getpid() && h.takeovers == 0 && h.dropped == 0 && h.clients == 0);
    /* A struct from an older header (only up to `pid`): the rest is not written. */
    struct {
        lq_host_info h;
        uint64_t guard;
    } small;
    memset(&small, 0xab, sizeof small);
    small.h.struct_size = offsetof(lq_host_info, pid) + sizeof(uint32_t);
    OK(lq_broker_host_info(b, &small.h, NULL, 0, 0));
    CHECK(small.h.pid == (uint32_t)getpid() && small.h.takeovers == 0xababababababababULL);

    lq_queue *jobs = queue(b, "jobs");
    char body[32];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "job-%03d", i);
        send_text(jobs, body, true);
    }
    lq_queue *held = queue(b, "held");
    send_text(held, "precious", true);
    OK(lq_broker_flush(b));

    /* The child: this program again (argv[0]), its fd 3 the pipe's write end. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], 3) < 0) _exit(3);
        execl(argv[0], argv[0], "child", dir, (char *)NULL);
        _exit(4);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    CHECK(in != NULL);
    char line[64];
    CHECK(fgets(line, sizeof line, in) != NULL && strcmp(line, "consumed\n") == 0);

    /* The child's acks reached this host: nothing left of "jobs". */
    lq_queue_stats st;
    OK(lq_queue_get_stats(jobs, &st));
    CHECK(st.ready == 0 && st.leased == 0 && st.acked == N);
    lq_queue *replies = queue(b, "replies");
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "reply-%03d", i);
        lq_delivery *d = expect_body(replies, body);
        OK(lq_delivery_ack(d));
        lq_delivery_free(d);
    }

    /* The child holds "precious": the host sees its lease. */
    CHECK(fgets(line, sizeof line, in) != NULL && strcmp(line, "holding\n") == 0);
    lq_host_client c[4];
    h = host_info(b, c, 4);
    CHECK(h.clients == 1 && c[0].pid == (uint32_t)pid && c[0].uid == (uint32_t)getuid());
    CHECK(c[0].leases == 1);
    /* Capacity 0: only the count. */
    h = host_info(b, NULL, 0);
    CHECK(h.clients == 1);

    /* Killed: the lease comes back at once (well within its 30 s). */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(kill(pid, SIGKILL) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    fclose(in);
    lq_delivery *d = expect_body(held, "precious");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 5);
    uint32_t count = 0;
    OK(lq_delivery_count(d, &count));
    CHECK(count == 2); /* counted as a delivery */
    OK(lq_delivery_ack(d));
    lq_delivery_free(d);
    for (int i = 0; i < 100; i++) { /* the host notices the client went */
        h = host_info(b, NULL, 0);
        if (h.clients == 0) break;
        struct timespec ms10 = {0, 10000000L};
        nanosleep(&ms10, NULL);
    }
    CHECK(h.clients == 0);

    lq_queue_free(jobs);
    lq_queue_free(held);
    lq_queue_free(replies);
    lq_broker_free(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("test_multiprocess: all checks passed\n");
    return 0;
}
