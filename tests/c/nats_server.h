/* A nats-server with JetStream for the bridge tests (C and C++): started on
 * 127.0.0.1 with a free port and a temporary store (fork/exec; found at
 * $LQ_NATS_SERVER, on PATH or in /usr/sbin — `make setup` installs Debian's),
 * killed (SIGKILL) and its store removed at exit, on a failed CHECK too; it
 * dies with the test if the test is killed (PR_SET_PDEATHSIG). Every wait is
 * bounded. Include it first (it defines _GNU_SOURCE). */
#ifndef LQ_TEST_NATS_SERVER_H
#define LQ_TEST_NATS_SERVER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t server_pid = -1;
static char store[] = "/tmp/lq-ctest-nats.XXXXXX";
static int store_made = 0;
static char url[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static pid_t server_owner = -1; /* only the process that started it stops it */

static void stop_server(void) {
    if (getpid() != server_owner) return;
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    if (store_made) {
        nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        store_made = 0;
    }
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

/* A port nobody listens on now (the kernel's pick, closed again). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t n = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &n) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int accepts(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static const char *server_binary(void) {
    const char *env = getenv("LQ_NATS_SERVER");
    if (env && *env) return env;
    static char path[4096];
    const char *p = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin", p ? p : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof path, "%s/nats-server", d);
        if (access(path, X_OK) == 0) return path;
    }
    fprintf(stderr, "test_bridge: nats-server not found: `make setup` installs it "
                    "(apt-get install nats-server), or set LQ_NATS_SERVER\n");
    exit(1);
}

static void start_server(void) {
    const char *bin = server_binary();
    CHECK(mkdtemp(store) != NULL);
    store_made = 1;
    atexit(stop_server);
    int port = free_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    pid_t parent = getpid();
    server_owner = parent;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* Dies with the test, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        FILE *null = freopen("/dev/null", "w", stdout);
        (void)null;
        null = freopen("/dev/null", "w", stderr);
        (void)null;
        execl(bin, "nats-server", "-js", "-a", "127.0.0.1", "-p", port_s, "-sd", store,
              (char *)NULL);
        _exit(127);
    }
    server_pid = pid;
    double deadline = now_s() + 15;
    while (!accepts(port)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            server_pid = -1;
            fprintf(stderr, "test_bridge: nats-server (%s) exited at start\n", bin);
            exit(1);
        }
        CHECK(now_s() < deadline); /* it did not accept within 15 s */
        sleep_ms(20);
    }
}

#endif
