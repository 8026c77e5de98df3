/* Two processes, one data directory: a producer and a consumer.
 *
 *   ./two_processes DIR [COUNT]
 *
 * The program opens DIR and, being the first, hosts it. It then starts itself
 * again as the consumer (fork + exec, `--consumer DIR COUNT`), which opens the
 * same DIR and attaches to this process: no server, no configuration — the
 * consumer's calls are served by the host over a Unix socket in DIR. The
 * producer sends COUNT persistent orders and makes them durable (flush); the
 * consumer receives and acks each (a message unacked when a process dies comes
 * back to the queue at once) and exits 0 if it got all COUNT, in order. Either
 * process could be any other program on the machine that opens DIR.
 * (docs/multi-process.md) */
#define _POSIX_C_SOURCE 200809L
#include "libqueue.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S(str) (const uint8_t *)(str), strlen(str)

static int fail(const char *who, const char *what, lq_status s) {
    fprintf(stderr, "%s: %s: %s: %s\n", who, what, lq_status_str(s), lq_last_error_message());
    return 1;
}

/* Opens DIR: the first process hosts it, the others attach. */
static lq_status open_dir(const char *dir, lq_broker **out) {
    lq_broker_options *opts = NULL;
    lq_status s = lq_broker_options_new(&opts);
    if (s == LQ_OK) s = lq_broker_options_set_data_dir(opts, S(dir));
    if (s == LQ_OK) s = lq_broker_open(opts, out);
    lq_broker_options_free(opts);
    return s;
}

static int consumer(const char *dir, long count) {
    lq_broker *b = NULL;
    lq_status s = open_dir(dir, &b);
    if (s != LQ_OK) return fail("consumer", "open", s);
    bool attached = false;
    lq_host_info host = {.struct_size = sizeof host};
    lq_broker_is_attached(b, &attached);
    if ((s = lq_broker_host_info(b, &host, NULL, 0, 0)) != LQ_OK) return fail("consumer", "host info", s);
    printf("consumer %d: %s, hosted by process %u\n", (int)getpid(),
           attached ? "attached" : "hosting", (unsigned)host.pid);

    lq_queue *q = NULL;
    if ((s = lq_broker_queue(b, S("orders"), &q)) != LQ_OK) return fail("consumer", "queue", s);
    long got = 0;
    char want[32];
    while (got < count) {
        lq_delivery *d = NULL;
        s = lq_queue_receive_timeout(q, 10000, &d); /* waits in the host, woken by a send */
        if (s != LQ_OK) return fail("consumer", "receive", s);
        const uint8_t *body = NULL;
        size_t len = 0;
        lq_delivery_body(d, &body, &len);
        snprintf(want, sizeof want, "order-%ld", got);
        if (len != strlen(want) || memcmp(body, want, len) != 0) {
            fprintf(stderr, "consumer: got \"%.*s\", expected \"%s\"\n", (int)len, (const char *)body, want);
            return 1;
        }
        if ((s = lq_delivery_ack(d)) != LQ_OK) return fail("consumer", "ack", s);
        lq_delivery_free(d);
        got++;
    }
    printf("consumer %d: received and acked %ld orders, in order\n", (int)getpid(), got);
    lq_queue_free(q);
    lq_broker_free(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--consumer") == 0) return consumer(argv[2], atol(argv[3]));
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [COUNT]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    const char *count = argc > 2 ? argv[2] : "1000";
    long n = atol(count);

    lq_broker *b = NULL;
    lq_status s = open_dir(dir, &b);
    if (s != LQ_OK) return fail("producer", "open", s);
    bool attached = false;
    lq_broker_is_attached(b, &attached);
    printf("producer %d: %s %s\n", (int)getpid(), attached ? "attached to" : "hosting", dir);

    /* The consumer: this program again. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return fail("producer", "fork", LQ_IO);
    if (pid == 0) {
        execl(argv[0], argv[0], "--consumer", dir, count, (char *)NULL);
        perror("exec");
        _exit(127);
    }

    lq_queue *q = NULL;
    if ((s = lq_broker_queue(b, S("orders"), &q)) != LQ_OK) return fail("producer", "queue", s);
    char body[32];
    for (long i = 0; i < n; i++) {
        lq_message *m = NULL;
        snprintf(body, sizeof body, "order-%ld", i);
        s = lq_message_new(S(body), &m);
        if (s == LQ_OK) s = lq_message_set_persistent(m, true);
        if (s == LQ_OK) s = lq_queue_send(q, m, NULL); /* consumes m */
        if (s != LQ_OK) return fail("producer", "send", s);
    }
    if ((s = lq_broker_flush(b)) != LQ_OK) return fail("producer", "flush", s);
    printf("producer %d: sent %ld orders, durable\n", (int)getpid(), n);

    /* Who is attached, while the consumer works. */
    lq_host_info host = {.struct_size = sizeof host};
    lq_host_client clients[8];
    if (lq_broker_host_info(b, &host, clients, 8, sizeof clients[0]) == LQ_OK)
        for (uint64_t i = 0; i < host.clients && i < 8; i++)
            printf("producer: attached process %u (uid %u, %llu leases)\n", (unsigned)clients[i].pid,
                   (unsigned)clients[i].uid, (unsigned long long)clients[i].leases);

    int status = 0;
    waitpid(pid, &status, 0); /* the host stays until its consumer is done */
    lq_queue_free(q);
    lq_broker_free(b);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    printf("two_processes: %s\n", ok ? "ok" : "the consumer failed");
    return ok ? 0 : 1;
}
