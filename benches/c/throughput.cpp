// Send/receive throughput through the C ABI against moodycamel's
// ConcurrentQueue doing the same work in the same run (`make bench-c`):
// P producer threads (1 and 4) each send N/P messages with a 64-byte body
// (libqueue copies the body in; the moodycamel side allocates a
// std::vector<uint8_t> per message, the same copy), one consumer takes them in
// batches of up to 64 and touches every body. libqueue runs twice: auto-ack
// (at-most-once, moodycamel's semantics) and leased + ack per message.
// With a path argument, also writes the medians there as JSON (`make bench`);
// LQ_BENCH_QUICK=1 runs 100,000 messages x 3 rounds instead of 400,000 x 5.
#include "libqueue.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

// Debian's libconcurrentqueue-dev: /usr/include/concurrentqueue/concurrentqueue.h
#if __has_include(<concurrentqueue/concurrentqueue.h>)
#include <concurrentqueue/concurrentqueue.h>
#elif __has_include(<concurrentqueue/moodycamel/concurrentqueue.h>)
#include <concurrentqueue/moodycamel/concurrentqueue.h>
#else
#include <concurrentqueue.h>
#endif

static size_t N = 400000;
static const uint8_t BODY[64] = {7};

static void ok(lq_status s) {
    if (s != LQ_OK) {
        std::fprintf(stderr, "%s: %s\n", lq_status_str(s), lq_last_error_message());
        std::exit(1);
    }
}

static double libqueue_run(int producers, bool ack) {
    lq_broker *b = nullptr;
    ok(lq_broker_open(nullptr, &b));
    lq_queue *q = nullptr;
    ok(lq_broker_queue(b, (const uint8_t *)"tp", 2, &q));
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ps;
    for (int p = 0; p < producers; p++)
        ps.emplace_back([&] {
            for (size_t i = 0; i < N / producers; i++) ok(lq_queue_send_bytes(q, BODY, sizeof BODY, nullptr));
        });
    size_t got = 0, sum = 0;
    lq_delivery *ds[64];
    while (got < N / producers * producers) {
        size_t n = 0;
        lq_status s = ack ? lq_queue_receive_batch(q, 64, 1000, ds, &n) : LQ_OK;
        if (!ack) {
            // Auto-ack batch: one message per call through the C ABI is the
            // common host pattern; take up to 64 with try.
            n = 0;
            while (n < 64 && lq_queue_receive_auto_ack(q, n == 0 ? 1000 : 0, &ds[n]) == LQ_OK) n++;
        } else {
            ok(s);
        }
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p;
            size_t len;
            ok(lq_delivery_body(ds[i], &p, &len));
            sum += p[0] + len;
            if (ack) ok(lq_delivery_ack(ds[i]));
            lq_delivery_free(ds[i]);
        }
        got += n;
    }
    for (auto &t : ps) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sum == 0) std::printf(" ");
    lq_queue_free(q);
    lq_broker_free(b);
    return got / secs;
}

static double moodycamel_run(int producers) {
    moodycamel::ConcurrentQueue<std::vector<uint8_t>> q;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ps;
    for (int p = 0; p < producers; p++)
        ps.emplace_back([&] {
            moodycamel::ProducerToken tok(q);
            for (size_t i = 0; i < N / producers; i++)
                q.enqueue(tok, std::vector<uint8_t>(BODY, BODY + sizeof BODY));
        });
    size_t got = 0, sum = 0;
    std::vector<uint8_t> items[64];
    moodycamel::ConsumerToken ctok(q);
    while (got < N / producers * producers) {
        size_t n = q.try_dequeue_bulk(ctok, items, 64);
        if (n == 0) std::this_thread::yield();
        for (size_t i = 0; i < n; i++) sum += items[i][0] + items[i].size();
        got += n;
    }
    for (auto &t : ps) t.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sum == 0) std::printf(" ");
    return got / secs;
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char **argv) {
    const char *quick = std::getenv("LQ_BENCH_QUICK");
    int rounds = 5;
    if (quick && std::strcmp(quick, "0") != 0) {
        N = 100000;
        rounds = 3;
    }
    FILE *json = argc > 1 ? std::fopen(argv[1], "w") : nullptr;
    if (argc > 1 && !json) {
        std::perror(argv[1]);
        return 1;
    }
    if (json)
        std::fprintf(json,
                     "{\n \"meta\": {\"messages\": \"%zu\", \"rounds\": \"%d\", \"payload_bytes\": \"64\", "
                     "\"capacities\": \"all unbounded\", \"consumers\": \"1, batches of up to 64\"},\n"
                     " \"records\": [\n",
                     N, rounds);
    std::printf("throughput, %zu messages of 64 bytes, 1 consumer, median of %d rounds (M msg/s)\n", N, rounds);
    std::printf("  %-10s %14s %14s %14s %12s\n", "producers", "moodycamel", "lq auto-ack", "lq lease+ack",
                "auto/moody");
    for (int p : {1, 4}) {
        std::vector<double> m, a, l;
        for (int r = 0; r < rounds; r++) {
            m.push_back(moodycamel_run(p));
            a.push_back(libqueue_run(p, false));
            l.push_back(libqueue_run(p, true));
        }
        double mm = median(m), aa = median(a), ll = median(l);
        std::printf("  %-10d %14.2f %14.2f %14.2f %12.2f\n", p, mm / 1e6, aa / 1e6, ll / 1e6, aa / mm);
        if (json) {
            const char *peers[] = {"moodycamel_concurrentqueue", "libqueue_c_auto_ack", "libqueue_c_lease_ack"};
            double vals[] = {mm, aa, ll};
            for (int i = 0; i < 3; i++)
                std::fprintf(json,
                             "  {\"scenario\": \"cpp_mpsc_%dx1\", \"peer\": \"%s\", \"metric\": \"throughput\", "
                             "\"value\": %.0f, \"unit\": \"msg/s\", \"better\": \"higher\"}%s\n",
                             p, peers[i], vals[i], (p == 4 && i == 2) ? "" : ",");
        }
    }
    if (json) {
        std::fprintf(json, " ]\n}\n");
        std::fclose(json);
    }
    return 0;
}
