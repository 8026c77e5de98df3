// The C++ bridge wrapper (libqueue::Bridge, BridgeBuilder) against a real
// nats-server that this test starts (tests/c/nats_server.h): messages out and
// back with their fields, stats, RAII stop, and errors as libqueue::Error.
#include "../c/nats_server.h"

#include "libqueue.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <type_traits>

using namespace std::chrono_literals;
using libqueue::Bridge;
using libqueue::Error;

static_assert(!std::is_copy_constructible_v<libqueue::Bridge>, "move-only");
static_assert(!std::is_copy_constructible_v<libqueue::BridgeBuilder>, "move-only");
static_assert(std::is_move_constructible_v<libqueue::Bridge>, "movable");

template <typename F>
static lq_status status_of(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        return e.status();
    }
    return LQ_OK;
}

template <typename F>
static libqueue::BridgeStats wait_for(const Bridge &b, F &&cond) {
    auto end = std::chrono::steady_clock::now() + 30s;
    for (;;) {
        libqueue::BridgeStats s = b.stats();
        if (cond(s)) return s;
        if (std::chrono::steady_clock::now() > end) {
            std::fprintf(stderr, "test_bridge (C++): not within 30 s; forwarded %llu received %llu "
                                 "last error %s\n",
                         (unsigned long long)s.forwarded, (unsigned long long)s.received,
                         s.last_error.value_or("-").c_str());
            std::exit(1);
        }
        std::this_thread::sleep_for(10ms);
    }
}

static void errors(libqueue::Broker &broker) {
    CHECK(status_of([] { Bridge::nats("http://h:1"); }) == LQ_INVALID_ARGUMENT);
    CHECK(status_of([] { Bridge::nats("nats://h:1").window(0); }) == LQ_INVALID_ARGUMENT);
    // RabbitMQ builders (tests/c/test_bridge_rabbit.c runs one against a server).
    CHECK(status_of([] { Bridge::rabbitmq("nats://h:1"); }) == LQ_INVALID_ARGUMENT);
    CHECK(status_of([] { Bridge::rabbitmq("amqp://h:1/").stream("S", {"a.b"}); }) ==
          LQ_INVALID_ARGUMENT);
    CHECK(status_of([] { Bridge::nats("nats://h:1").forward_exchange("q", "x", "k"); }) ==
          LQ_INVALID_ARGUMENT);
    {
        auto r = Bridge::rabbitmq("amqp://guest:guest@127.0.0.1:1/");
        r.forward_exchange("q", "", "k").forward("q2", "k2").receive("rq", "q3").window(4);
        std::string nobody_amqp = "amqp://guest:guest@127.0.0.1:" + std::to_string(free_port()) + "/";
        CHECK(status_of([&] {
                  Bridge::rabbitmq(nobody_amqp).forward_exchange("q", "", "k")
                      .connect_timeout(1500ms).start(broker);
              }) == LQ_IO);
    }
    // No route; then the spent builder says so.
    auto b = Bridge::nats("nats://127.0.0.1:1");
    CHECK(status_of([&] { b.start(broker); }) == LQ_INVALID_ARGUMENT);
    CHECK(status_of([&] { b.forward("q", "a.b"); }) == LQ_INVALID_STATE);
    // Nobody listens: LQ_IO; in the background the error shows in the stats.
    std::string nobody = "nats://127.0.0.1:" + std::to_string(free_port());
    CHECK(status_of([&] {
              Bridge::nats(nobody).forward("kept", "x.y").connect_timeout(1500ms).start(broker);
          }) == LQ_IO);
    Bridge bg = Bridge::nats(nobody).forward("kept", "x.y").connect_in_background().start(broker);
    libqueue::BridgeStats s = wait_for(bg, [](auto &s) { return s.last_error.has_value(); });
    CHECK(!s.connected && s.last_error_at && s.error_since && *s.error_since <= *s.last_error_at);
    bg.stop();
    bg.stop();  // idempotent
}

static void out_and_back(libqueue::Broker &broker) {
    const int n = 100;
    {
        Bridge bridge = Bridge::nats(url)
                            .stream("CPP", {"cpp.out", "cpp.spare"})
                            .forward("cpp-jobs", "cpp.out")
                            .receive("cpp.out", "cpp-back")
                            .window(8)
                            .backoff(10ms, 500ms)
                            .start(broker);
        auto jobs = broker.queue("cpp-jobs");
        for (int i = 0; i < n; i++)
            jobs.send(libqueue::Message("job-" + std::to_string(i))
                          .name("greet")
                          .header("k", std::to_string(i)));
        auto s = wait_for(bridge, [&](auto &s) { return s.forwarded == n && s.received == n; });
        CHECK(s.connected && s.dead_lettered == 0 && !s.error_since);
        auto back = broker.queue("cpp-back");
        for (int i = 0; i < n; i++) {
            auto d = back.receive(5000ms);
            CHECK(d.has_value());
            CHECK(d->body().str() == "job-" + std::to_string(i));
            CHECK(d->name() == std::optional<std::string_view>("greet"));
            CHECK(d->header("k")->str() == std::to_string(i));
            d->ack();
        }
        // One forwarder per queue while this bridge lives...
        CHECK(status_of([&] { Bridge::nats(url).forward("cpp-jobs", "cpp.out").start(broker); }) ==
              LQ_ALREADY_EXISTS);
    }
    // ... and the destructor stopped it: the queue may be forwarded again.
    Bridge again = Bridge::nats(url).forward("cpp-jobs", "cpp.out").start(broker);
    again.stop();
    CHECK(again.stats().forwarded == 0);
}

int main() {
    libqueue::Broker broker;
    errors(broker);
    start_server();
    out_and_back(broker);
    stop_server();
    std::printf("test_bridge (C++): ok\n");
    return 0;
}
