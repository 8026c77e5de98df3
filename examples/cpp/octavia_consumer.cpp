// The Octavia queue consumer (the `octavia-queue-consumer` seed) in C++, as
// examples/octavia_consumer.rs does it in Rust.
//
//   ./octavia_consumer            pool of 4
//   ./octavia_consumer 8          pool of 8
//   RPC_THREAD_POOL_SIZE=1 ./octavia_consumer
//
// The controller listens on the OCTAVIA_PROV topic through its queue
// `octavia-controller` with a pool whose 15 handlers (lambdas) are the seed's
// consumer methods (create_load_balancer ... delete_member). The pool size is
// the seed's rpc_thread_pool_size: at most that many handlers run at once.
// An "API" thread publishes 2000 messages, marking each object PENDING_* first;
// handlers move it to ACTIVE or DELETED. Two members are bad: their handler
// throws, sets them to ERROR, and after max_deliveries (3) the message lands in
// the dead-letter queue with the error text. Exits 1 if a check fails.
#include "libqueue.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using libqueue::DeliveryView;
using libqueue::Message;

namespace {

constexpr const char *TOPIC = "OCTAVIA_PROV";
constexpr const char *QUEUE = "octavia-controller";
constexpr const char *DLQ = "octavia-controller.dlq";
constexpr int MESSAGES = 2000;
constexpr uint32_t MAX_DELIVERIES = 3;
const char *const OBJECTS[5] = {"load_balancer", "listener", "pool", "health_monitor", "member"};
const char *const VERBS[3] = {"create", "update", "delete"};
const char *const BAD_MEMBERS[2] = {"member-0777", "member-1498"};

enum class Status { PendingCreate, PendingUpdate, PendingDelete, Active, Deleted, Error };

const char *status_str(Status s) {
    switch (s) {
        case Status::PendingCreate: return "PENDING_CREATE";
        case Status::PendingUpdate: return "PENDING_UPDATE";
        case Status::PendingDelete: return "PENDING_DELETE";
        case Status::Active: return "ACTIVE";
        case Status::Deleted: return "DELETED";
        case Status::Error: return "ERROR";
    }
    return "?";
}

struct Method {
    int op;  // 0 create, 1 update, 2 delete
    std::string object;
    std::string name() const { return std::string(VERBS[op]) + "_" + object; }
    std::string id_prefix() const {
        if (object == "load_balancer") return "lb";
        if (object == "health_monitor") return "hm";
        return object;
    }
    Status pending() const {
        return op == 0 ? Status::PendingCreate : op == 1 ? Status::PendingUpdate : Status::PendingDelete;
    }
    Status done() const { return op == 2 ? Status::Deleted : Status::Active; }
    std::chrono::microseconds work() const { return std::chrono::microseconds(op == 0 ? 900 : op == 1 ? 600 : 400); }
};

/// `"key": "value"` in a flat JSON-ish body.
std::string field(std::string_view body, const std::string &key) {
    std::string pat = "\"" + key + "\": \"";
    size_t at = body.find(pat);
    if (at == std::string_view::npos) return {};
    size_t start = at + pat.size();
    size_t end = body.find('"', start);
    return end == std::string_view::npos ? std::string() : std::string(body.substr(start, end - start));
}

struct Controller {
    std::vector<Method> methods;
    std::mutex db_mu;
    std::map<std::string, Status> db;
    std::atomic<size_t> running{0}, max_running{0};
    std::vector<std::atomic<uint64_t>> ok, failed;
    std::atomic<int> finished{0};

    Controller() : ok(15), failed(15) {
        for (const char *o : OBJECTS)
            for (int op = 0; op < 3; op++) methods.push_back(Method{op, o});
    }

    /// Every consumer method: (context, [*_updates,] *_id). Throws to fail.
    void handle(size_t m, const DeliveryView &d) {
        size_t now = ++running;
        size_t seen = max_running.load();
        while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
        }
        struct Leave {
            std::atomic<size_t> &r;
            ~Leave() { --r; }
        } leave{running};

        const Method &method = methods[m];
        std::string id = field(d.body().str(), method.object + "_id");
        if (id.empty()) throw std::runtime_error(method.name() + ": no " + method.object + "_id");
        {
            std::lock_guard<std::mutex> g(db_mu);
            auto it = db.find(id);
            if (it == db.end()) throw std::runtime_error(id + " not in the database");
            if (it->second != method.pending() && it->second != Status::Error)
                throw std::runtime_error(method.name() + ": " + id + " is " + status_str(it->second));
        }
        std::this_thread::sleep_for(method.work());  // provisioning
        bool last_try = d.delivery_count() >= MAX_DELIVERIES;
        if (std::find(std::begin(BAD_MEMBERS), std::end(BAD_MEMBERS), id) != std::end(BAD_MEMBERS)) {
            {
                std::lock_guard<std::mutex> g(db_mu);
                db[id] = Status::Error;
            }
            failed[m]++;
            std::printf("  %s %s: try %u/%u failed -> ERROR%s\n", method.name().c_str(), id.c_str(),
                        d.delivery_count(), MAX_DELIVERIES, last_try ? ", giving up" : ", will retry");
            if (last_try) finished++;
            throw std::runtime_error(method.name() + " " + id + ": amphora refused the member: connection refused");
        }
        {
            std::lock_guard<std::mutex> g(db_mu);
            db[id] = method.done();
        }
        ok[m]++;
        finished++;
    }
};

size_t pool_size() {
    const char *text = nullptr;
    if (const char *env = std::getenv("RPC_THREAD_POOL_SIZE")) text = env;
    if (!text) return 4;
    long n = std::atol(text);
    if (n < 1 || n > 256) {
        std::fprintf(stderr, "octavia_consumer: pool size must be 1..=256, got %s\n", text);
        std::exit(2);
    }
    return static_cast<size_t>(n);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc > 1) setenv("RPC_THREAD_POOL_SIZE", argv[1], 1);
    const size_t size = pool_size();
    std::vector<std::string> problems;
    auto check = [&](bool ok, const std::string &what) {
        if (!ok) problems.push_back(what);
    };

    try {
        libqueue::Broker broker;
        auto ns = broker.ns("octavia");
        auto controller_q = ns.create_queue(QUEUE, libqueue::QueueOptions()
                                                       .lease_time(30s)
                                                       .max_deliveries(MAX_DELIVERIES)
                                                       .dead_letter_queue(DLQ));
        auto topic = ns.topic(TOPIC);
        topic.subscribe(QUEUE);
        auto dlq = *ns.get_queue(DLQ);
        std::printf("controller: topic %s -> queue %s, rpc_thread_pool_size = %zu\n", TOPIC, QUEUE, size);

        Controller c;
        libqueue::PoolBuilder builder(ns, QUEUE);
        builder.size(size).backoff(10ms, 100ms);
        for (size_t m = 0; m < c.methods.size(); m++)
            builder.handler(c.methods[m].name(), [&c, m](const DeliveryView &d) { c.handle(m, d); });
        auto pool = builder.start();
        std::printf("controller: pool started with %zu handlers\n", c.methods.size());

        auto started = std::chrono::steady_clock::now();
        std::vector<uint64_t> published(15, 0);
        std::thread api([&] {
            for (int i = 0; i < MESSAGES; i++) {
                size_t m = static_cast<size_t>(i) % c.methods.size();
                const Method &method = c.methods[m];
                char id[32];
                std::snprintf(id, sizeof id, "%s-%04d", method.id_prefix().c_str(), i);
                std::string body = "{\"context\": {\"request_id\": \"req-" + std::to_string(i) +
                                   "\"}, \"" + method.object + "_id\": \"" + id + "\"}";
                {
                    std::lock_guard<std::mutex> g(c.db_mu);
                    c.db[id] = method.pending();
                }
                topic.publish(Message(body).name(method.name()));
                published[m]++;
            }
        });
        api.join();
        auto deadline = started + 8s;
        while (c.finished.load() < MESSAGES && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(5ms);
        auto elapsed = std::chrono::steady_clock::now() - started;
        check(c.finished.load() == MESSAGES,
              "timed out with " + std::to_string(c.finished.load()) + " finished");
        // Let the pool count the last results, then stop it (drains).
        for (int i = 0; i < 200; i++) {
            auto s = pool.stats();
            if (s.active == 0 && s.succeeded + s.failed == s.handled) break;
            std::this_thread::sleep_for(1ms);
        }
        pool.stop();
        auto ps = pool.stats();

        std::printf("\ndead-letter queue %s:\n", DLQ);
        std::vector<std::string> dead;
        while (auto d = dlq.receive(dead.size() < 2 ? 1000ms : 0ms)) {
            std::string id = field(d->body().str(), "member_id");
            auto reason = d->header("x-dead-letter-reason");
            std::printf("  %s %s\n    reason: %.*s\n", std::string(d->name().value_or("-")).c_str(), id.c_str(),
                        reason ? static_cast<int>(reason->size()) : 6,
                        reason ? reason->str().data() : "(none)");
            dead.push_back(id);
            d->ack();
        }
        std::sort(dead.begin(), dead.end());
        check(dead == std::vector<std::string>(std::begin(BAD_MEMBERS), std::end(BAD_MEMBERS)),
              "dead letters are not the two bad members");

        std::printf("\n  %-22s %9s %10s %13s\n", "method", "published", "succeeded", "failed tries");
        for (size_t m = 0; m < c.methods.size(); m++) {
            std::printf("  %-22s %9llu %10llu %13llu\n", c.methods[m].name().c_str(),
                        static_cast<unsigned long long>(published[m]),
                        static_cast<unsigned long long>(c.ok[m].load()),
                        static_cast<unsigned long long>(c.failed[m].load()));
        }
        std::map<Status, int> by_status;
        {
            std::lock_guard<std::mutex> g(c.db_mu);
            for (auto &kv : c.db) by_status[kv.second]++;
        }
        std::printf("\nfinal statuses:");
        for (auto &kv : by_status) std::printf(" %s %d", status_str(kv.first), kv.second);
        std::printf("\n");
        int deletes = MESSAGES / 3 + (MESSAGES % 3 > 2 ? 1 : 0);
        check(by_status[Status::PendingCreate] + by_status[Status::PendingUpdate] +
                      by_status[Status::PendingDelete] == 0,
              "objects left PENDING_*");
        check(by_status[Status::Error] == 2, "bad members are not ERROR");
        check(by_status[Status::Deleted] == deletes, "wrong DELETED count");
        check(by_status[Status::Active] == MESSAGES - deletes - 2, "wrong ACTIVE count");

        std::printf("\nthrottle: most handlers at once %zu (pool max_active %llu), pool size %zu\n",
                    c.max_running.load(), static_cast<unsigned long long>(ps.max_active), size);
        check(c.max_running.load() <= size && ps.max_active <= size, "the throttle did not hold");
        const uint64_t bad = 2, retries = bad * (MAX_DELIVERIES - 1);
        check(ps.handled == MESSAGES + retries && ps.succeeded == MESSAGES - bad &&
                  ps.failed == bad * MAX_DELIVERIES,
              "pool stats are off");
        auto qs = controller_q.stats();
        check(qs.sent == MESSAGES && qs.acked == MESSAGES - bad && qs.dead_lettered == bad &&
                  qs.redelivered == retries && qs.ready + qs.leased + qs.delayed == 0,
              "controller queue stats are off");
        double secs = std::chrono::duration<double>(elapsed).count();
        std::printf("%d messages in %.1f ms: %.0f messages/s with %zu worker(s)\n", MESSAGES,
                    secs * 1e3, MESSAGES / secs, size);
    } catch (const libqueue::Error &e) {
        std::fprintf(stderr, "octavia_consumer: %s\n", e.what());
        return 1;
    }
    if (!problems.empty()) {
        std::printf("\n%zu check(s) FAILED:\n", problems.size());
        for (auto &p : problems) std::printf("  - %s\n", p.c_str());
        return 1;
    }
    std::printf("\nall checks passed\n");
    return 0;
}
