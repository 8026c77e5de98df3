// The C++ wrapper: RAII, move-only owners, the one exception type, optionals
// for nothing-there, zero-copy views, lambdas as pool handlers, RPC.
#include "libqueue.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <type_traits>
#include <unistd.h>

using namespace std::chrono_literals;
using libqueue::Error;
using libqueue::Message;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

template <typename F>
static lq_status status_of(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        return e.status();
    }
    return LQ_OK;
}

static_assert(!std::is_copy_constructible_v<libqueue::Broker>, "move-only");
static_assert(std::is_move_constructible_v<libqueue::Queue>, "movable");
static_assert(!std::is_copy_assignable_v<libqueue::Delivery>, "move-only");

static void basics() {
    libqueue::Broker broker;
    auto q = broker.queue("jobs");
    CHECK(q.name() == "jobs");
    uint64_t id = q.send(Message("hello").name("greet").header("k", "v").priority(6));
    auto d = q.try_receive();
    CHECK(d.has_value());
    CHECK(d->id() == id);
    CHECK(d->body().str() == "hello");
    CHECK(d->name() == std::optional<std::string_view>("greet"));
    CHECK(!d->correlation_id());
    CHECK(d->header("k")->str() == "v");
    CHECK(!d->header("missing"));
    CHECK(d->headers().size() == 1);
    CHECK(d->priority() == 6 && d->delivery_count() == 1 && !d->persistent());
    d->extend(1000ms);
    d->ack();
    CHECK(status_of([&] { d->ack(); }) == LQ_INVALID_STATE);
    try {
        d->ack();
    } catch (const Error &e) {
        CHECK(std::string(e.what()).find("LQ_INVALID_STATE") == 0);
    }
    CHECK(!q.try_receive());
    CHECK(!q.receive(10ms));

    std::vector<Message> msgs;
    for (const char *b : {"a", "b", "c"}) msgs.emplace_back(b);
    auto ids = q.send_batch(std::move(msgs));
    CHECK(ids.size() == 3);
    CHECK(q.peek(10).size() == 3);
    q.cancel(ids[2]);
    auto batch = q.receive_batch(10);
    CHECK(batch.size() == 2);
    batch[0].nack();
    batch[1].nack(0ms, "later");
    CHECK(q.purge() == 2);
    CHECK(q.receive_batch(4, 5ms).empty());
    q.send("auto");
    auto a = q.receive_auto_ack();
    CHECK(a && a->body().str() == "auto");
    auto st = q.stats();
    CHECK(st.cancelled == 1 && st.purged == 2 && st.acked == 2);
    CHECK(q.fd() >= 0);

    Message m("x");
    q.send(std::move(m));
    CHECK(status_of([&] { m.name("n"); }) == LQ_INVALID_STATE);  // moved-from
    CHECK(status_of([&] { broker.queue("bad name"); }) == LQ_INVALID_NAME);
    CHECK(status_of([&] { Message("x").priority(10); }) == LQ_INVALID_ARGUMENT);
    CHECK(!broker.get_namespace("nope"));
    broker.close();
    CHECK(broker.closed());
    CHECK(status_of([&] { q.send("late"); }) == LQ_CLOSED);
}

static void options_quotas_topics() {
    libqueue::Broker broker;
    auto ns = broker.create_namespace("tenant", libqueue::Quotas().max_queues(5).max_message_size(8));
    CHECK(ns.name() == "tenant");
    auto q = ns.create_queue("small", libqueue::QueueOptions()
                                          .max_messages(1)
                                          .on_full(libqueue::OnFull::reject)
                                          .max_deliveries(1)
                                          .dead_letter_queue("small.dlq"));
    q.send("1");
    CHECK(status_of([&] { q.send("2"); }) == LQ_FULL);
    CHECK(status_of([&] { q.send(Message("2"), libqueue::OnFull::timeout, 5ms); }) == LQ_TIMEOUT);
    CHECK(status_of([&] { q.send("123456789"); }) == LQ_MESSAGE_TOO_LARGE);
    q.receive().nack(0ms, "bad");
    auto dlq = ns.get_queue("small.dlq");
    CHECK(dlq && dlq->stats().ready == 1);
    CHECK(ns.queues().size() == 2);

    auto t = ns.topic("events");
    auto all = t.subscribe("audit");
    auto named = t.subscribe_name("creates", "create");
    t.subscribe_header("exec", "execution_id", "e-1");
    CHECK(t.publish(Message("{}").name("create")) == 2);
    CHECK(status_of([&] { ns.queue("sixth"); }) == LQ_QUOTA_EXCEEDED);
    CHECK(t.subscriptions().size() == 3);
    CHECK(t.stats().published == 1 && t.stats().subscriptions == 3);
    t.unsubscribe("exec");
    CHECK(ns.topics().size() == 1);
    CHECK(all.stats().ready == 1 && named.stats().ready == 1);
    CHECK(ns.stats().queues == 5);
}

static void pool_and_rpc() {
    libqueue::Broker broker;
    auto ns = broker.ns("svc");
    std::atomic<int> created{0}, failed{0};
    auto pool = libqueue::PoolBuilder(ns, "math")
                    .size(2)
                    .backoff(1ms, 2ms)
                    .handler("double",
                             [](const libqueue::DeliveryView &d) {
                                 return std::to_string(2 * std::stol(std::string(d.body().str())));
                             })
                    .handler("create", [&](const libqueue::DeliveryView &) { created++; })
                    .handler("fail",
                             [&](const libqueue::DeliveryView &) -> std::optional<std::string> {
                                 failed++;
                                 throw std::runtime_error("no can do");
                             })
                    .start();
    libqueue::RpcClient rpc(ns);
    auto reply = rpc.call("math", Message("21").name("double"), 5s);
    CHECK(reply && reply->body().str() == "42");
    CHECK(!rpc.call("nobody", Message("1"), 10ms));
    rpc.cast("math", Message("").name("create"));
    CHECK(rpc.fanout("no-topic", Message("x")) == 0);

    auto ns2 = broker.ns("svc");
    auto strict = ns2.create_queue("strict", libqueue::QueueOptions().max_deliveries(1));
    auto running = libqueue::PoolBuilder(ns2, "strict")
                       .default_handler([](const libqueue::DeliveryView &) -> std::string {
                           throw std::runtime_error("division by zero");
                       })
                       .start();
    try {
        rpc.call("strict", Message("1"), 5s);
        CHECK(false);
    } catch (const Error &e) {
        CHECK(e.status() == LQ_REMOTE);
        CHECK(std::string(e.what()).find("division by zero") != std::string::npos);
    }
    for (int i = 0; i < 500 && pool.stats().handled < 2; i++) std::this_thread::sleep_for(2ms);
    CHECK(pool.stop() == 0);
    CHECK(created == 1);
    auto ps = pool.stats();
    CHECK(ps.handled == 2 && ps.succeeded == 2 && ps.max_active <= 2);
}

static void persistence() {
    char dir[] = "/tmp/lq-cpptest-XXXXXX";
    CHECK(mkdtemp(dir));
    libqueue::BrokerOptions opts;
    opts.data_dir(dir).sync_mode(libqueue::SyncMode::interval, 5ms);
    {
        libqueue::Broker b(opts);
        CHECK(b.recovery_report()->messages_recovered == 0);
        auto q = b.queue("durable");
        q.send(Message("keep").persistent(true));
        b.flush();
    }
    {
        libqueue::Broker b(opts);
        CHECK(b.recovery_report()->messages_recovered == 1);
        CHECK(b.recovery_damage().empty());
        auto d = b.queue("durable").try_receive();
        CHECK(d && d->body().str() == "keep" && d->persistent());
        d->ack();
    }
    CHECK(std::system((std::string("rm -rf ") + dir).c_str()) == 0);
}

// A second open of a hosted directory attaches (here from the same process,
// which the host serves as it would another); host_info sees it; an exclusive
// open is refused. tests/c/test_multiprocess.c does it across processes.
static void shared_directory() {
    char dir[] = "/tmp/lq-cpptest-shared-XXXXXX";
    CHECK(mkdtemp(dir));
    libqueue::BrokerOptions opts;
    opts.data_dir(dir).allow_uids({});
    libqueue::Broker host(opts);
    CHECK(!host.attached());
    auto h = host.host_info();
    CHECK(h.pid == static_cast<uint32_t>(getpid()) && h.takeovers == 0 && h.clients.empty());
    {
        libqueue::Broker guest(opts);
        CHECK(guest.attached());
        guest.queue("shared").send(Message("across").persistent(true));
        guest.flush();
        auto d = host.queue("shared").try_receive();
        CHECK(d && d->body().str() == "across");
        d->ack();
        h = guest.host_info();
        CHECK(h.pid == static_cast<uint32_t>(getpid()) && h.clients.size() == 1);
        CHECK(h.clients[0].pid == static_cast<uint32_t>(getpid()) && h.clients[0].uid == getuid());
        libqueue::BrokerOptions alone;
        alone.data_dir(dir).exclusive(true);
        CHECK(status_of([&] { libqueue::Broker b(alone); }) == LQ_LOCKED);
    }
    libqueue::Broker memory;
    CHECK(!memory.attached());
    CHECK(status_of([&] { memory.host_info(); }) == LQ_INVALID_STATE);
    host.close();
    CHECK(std::system((std::string("rm -rf ") + dir).c_str()) == 0);
}

// close() from another thread wakes the receive waiting in the handle.
static void close_wakes_a_waiter() {
    libqueue::Broker broker;
    auto q = broker.queue("waiting");
    std::atomic<int> got{-1};
    std::thread waiter([&] { got = status_of([&] { q.receive(); }); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    q.close();
    waiter.join();
    CHECK(got == LQ_CLOSED);
    CHECK(q.closed());
    CHECK(status_of([&] { q.send("late"); }) == LQ_CLOSED);
    auto other = broker.queue("waiting");  // the queue itself goes on
    other.send("still open");
}

int main() {
    basics();
    close_wakes_a_waiter();
    options_quotas_topics();
    pool_and_rpc();
    persistence();
    shared_directory();
    std::printf("test_wrapper: all checks passed\n");
    return 0;
}
