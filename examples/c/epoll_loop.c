/* An epoll event loop on the queues' pollable descriptors: no thread blocks in
 * the library, no polling. Two queues; a producer thread sends to both with
 * small pauses; the loop wakes when a descriptor is readable and drains that
 * queue with non-blocking receives (LQ_EMPTY clears the descriptor).
 *
 *   ./epoll_loop [COUNT]        exits 0 when it got 2*COUNT messages */
#define _POSIX_C_SOURCE 200809L
#include "libqueue.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define S(str) (const uint8_t *)(str), strlen(str)

static long count = 200;

static void *produce(void *arg) {
    lq_queue **qs = arg;
    for (long i = 0; i < count; i++) {
        for (int k = 0; k < 2; k++) {
            char body[32];
            int n = snprintf(body, sizeof body, "q%d-%ld", k, i);
            if (lq_queue_send_bytes(qs[k], (const uint8_t *)body, (size_t)n, NULL) != LQ_OK) {
                fprintf(stderr, "send: %s\n", lq_last_error_message());
                exit(1);
            }
        }
        if (i % 50 == 0) {
            struct timespec t = {0, 1000000L}; /* let the loop go idle now and then */
            nanosleep(&t, NULL);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) count = atol(argv[1]);
    lq_broker *b = NULL;
    if (lq_broker_open(NULL, &b) != LQ_OK) return 1;
    lq_queue *qs[2] = {NULL, NULL};
    const char *names[2] = {"events", "alerts"};
    int ep = epoll_create1(0);
    for (int k = 0; k < 2; k++) {
        int fd = -1;
        if (lq_broker_queue(b, S(names[k]), &qs[k]) != LQ_OK || lq_queue_fd(qs[k], &fd) != LQ_OK) {
            fprintf(stderr, "setup: %s\n", lq_last_error_message());
            return 1;
        }
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN; /* level-triggered */
        ev.data.u32 = (uint32_t)k;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    pthread_t producer;
    pthread_create(&producer, NULL, produce, qs);

    long got[2] = {0, 0}, wakeups = 0;
    while (got[0] + got[1] < 2 * count) {
        struct epoll_event evs[2];
        int n = epoll_wait(ep, evs, 2, 5000);
        if (n <= 0) {
            fprintf(stderr, "epoll_loop: no event within 5 s\n");
            return 1;
        }
        wakeups++;
        for (int i = 0; i < n; i++) {
            uint32_t k = evs[i].data.u32;
            lq_delivery *d = NULL;
            lq_status s;
            while ((s = lq_queue_try_receive(qs[k], &d)) == LQ_OK) {
                lq_delivery_ack(d);
                lq_delivery_free(d);
                got[k]++;
            }
            if (s != LQ_EMPTY) {
                fprintf(stderr, "receive: %s\n", lq_last_error_message());
                return 1;
            }
        }
    }
    pthread_join(producer, NULL);
    printf("epoll_loop: %ld from %s, %ld from %s, in %ld wake-ups\n", got[0], names[0], got[1],
           names[1], wakeups);
    close(ep);
    lq_queue_free(qs[0]);
    lq_queue_free(qs[1]);
    lq_broker_free(b);
    return got[0] == count && got[1] == count ? 0 : 1;
}
