// libqueue.hpp — header-only C++17 RAII wrapper over the C ABI (libqueue.h).
//
//   libqueue::Broker broker;
//   auto q = broker.queue("jobs");
//   q.send(libqueue::Message("hello").name("greet"));
//   if (auto d = q.try_receive()) { use(d->body().str()); d->ack(); }
//
// Owning types (Broker, Namespace, Queue, Topic, Message, Delivery, Pool,
// RpcClient, Bridge, the builders and options) are move-only and free their handle on destruction.
// Every failure throws libqueue::Error (status + message); "nothing there"
// (empty, timeout) is a std::optional. Bodies are zero-copy views (Bytes) valid
// until the delivery is acked, nacked or destroyed. Pool handlers are lambdas
// called on the pool's worker threads; an exception from one fails the message.
#ifndef LIBQUEUE_HPP
#define LIBQUEUE_HPP

#include "libqueue.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace libqueue {

/// The one exception type: a status (lq_status) and the library's message.
class Error : public std::runtime_error {
public:
    Error(lq_status status, const std::string &message)
        : std::runtime_error(std::string(lq_status_str(status)) + ": " + message), status_(status) {}
    lq_status status() const noexcept { return status_; }

private:
    lq_status status_;
};

namespace detail {

inline void check(lq_status s) {
    if (s != LQ_OK) throw Error(s, lq_last_error_message());
}

/// True for statuses that mean "nothing there" (an empty optional).
inline bool nothing(lq_status s) { return s == LQ_EMPTY || s == LQ_TIMEOUT; }

inline const uint8_t *bytes(std::string_view s) {
    return reinterpret_cast<const uint8_t *>(s.data());
}

template <typename T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};

template <typename T, void (*Free)(T *)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

inline uint64_t ms(std::chrono::milliseconds d) {
    return d.count() < 0 ? 0 : static_cast<uint64_t>(d.count());
}

inline std::vector<std::string> strings(lq_strings *raw) {
    Owned<lq_strings, lq_strings_free> list(raw);
    size_t n = 0;
    check(lq_strings_len(list.get(), &n));
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = nullptr;
        size_t len = 0;
        check(lq_strings_get(list.get(), i, &p, &len));
        out.emplace_back(reinterpret_cast<const char *>(p), len);
    }
    return out;
}

}  // namespace detail

/// Wait forever (a timeout argument).
inline constexpr std::chrono::milliseconds forever{-1};

inline uint64_t timeout_ms(std::chrono::milliseconds t) {
    return t.count() < 0 ? LQ_WAIT_FOREVER : static_cast<uint64_t>(t.count());
}

/// A read-only view of bytes owned by the library (a std::span-like view).
class Bytes {
public:
    Bytes() = default;
    Bytes(const uint8_t *data, size_t size) : data_(data), size_(size) {}
    const uint8_t *data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const uint8_t *begin() const noexcept { return data_; }
    const uint8_t *end() const noexcept { return data_ + size_; }
    uint8_t operator[](size_t i) const noexcept { return data_[i]; }
    /// The same bytes as text (no copy).
    std::string_view str() const noexcept {
        return std::string_view(reinterpret_cast<const char *>(data_), size_);
    }

private:
    const uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

/// Library version ("MAJOR.MINOR.PATCH").
inline std::string_view version() { return lq_version(); }

// ---- options ----------------------------------------------------------------------

/// Namespace limits.
class Quotas {
public:
    Quotas() {
        lq_quotas *q = nullptr;
        detail::check(lq_quotas_new(&q));
        h_.reset(q);
    }
    Quotas &max_queues(uint64_t n) { return set(lq_quotas_set_max_queues(h_.get(), n)); }
    Quotas &max_messages(uint64_t n) { return set(lq_quotas_set_max_messages(h_.get(), n)); }
    Quotas &max_bytes(uint64_t n) { return set(lq_quotas_set_max_bytes(h_.get(), n)); }
    Quotas &max_message_size(uint64_t n) {
        return set(lq_quotas_set_max_message_size(h_.get(), n));
    }
    const lq_quotas *raw() const noexcept { return h_.get(); }

private:
    Quotas &set(lq_status s) {
        detail::check(s);
        return *this;
    }
    detail::Owned<lq_quotas, lq_quotas_free> h_;
};

/// What a send does when the queue is full.
enum class OnFull : uint32_t {
    block = LQ_ON_FULL_BLOCK,
    reject = LQ_ON_FULL_REJECT,
    timeout = LQ_ON_FULL_TIMEOUT,
};

/// Per-queue options.
class QueueOptions {
public:
    QueueOptions() {
        lq_queue_options *o = nullptr;
        detail::check(lq_queue_options_new(&o));
        h_.reset(o);
    }
    QueueOptions &max_messages(uint64_t n) {
        return set(lq_queue_options_set_max_messages(h_.get(), n));
    }
    QueueOptions &max_bytes(uint64_t n) {
        return set(lq_queue_options_set_max_bytes(h_.get(), n));
    }
    QueueOptions &on_full(OnFull mode,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
        return set(lq_queue_options_set_on_full(h_.get(), static_cast<uint32_t>(mode),
                                                detail::ms(timeout)));
    }
    QueueOptions &default_ttl(std::chrono::milliseconds t) {
        return set(lq_queue_options_set_default_ttl_ms(h_.get(), detail::ms(t)));
    }
    QueueOptions &default_delay(std::chrono::milliseconds t) {
        return set(lq_queue_options_set_default_delay_ms(h_.get(), detail::ms(t)));
    }
    QueueOptions &default_priority(uint8_t p) {
        return set(lq_queue_options_set_default_priority(h_.get(), p));
    }
    QueueOptions &lease_time(std::chrono::milliseconds t) {
        return set(lq_queue_options_set_lease_time_ms(h_.get(), detail::ms(t)));
    }
    QueueOptions &max_deliveries(uint32_t n) {
        return set(lq_queue_options_set_max_deliveries(h_.get(), n));
    }
    QueueOptions &dead_letter_queue(std::string_view name) {
        return set(lq_queue_options_set_dead_letter_queue(h_.get(), detail::bytes(name),
                                                          name.size()));
    }
    QueueOptions &persistent(bool yes) {
        return set(lq_queue_options_set_persistent(h_.get(), yes));
    }
    QueueOptions &strict_fifo(bool yes) {
        return set(lq_queue_options_set_strict_fifo(h_.get(), yes));
    }
    QueueOptions &shards(size_t n) { return set(lq_queue_options_set_shards(h_.get(), n)); }
    const lq_queue_options *raw() const noexcept { return h_.get(); }

private:
    QueueOptions &set(lq_status s) {
        detail::check(s);
        return *this;
    }
    detail::Owned<lq_queue_options, lq_queue_options_free> h_;
};

/// When journal records reach the disk.
enum class SyncMode : uint32_t {
    none = LQ_SYNC_NONE,
    interval = LQ_SYNC_INTERVAL,
    always = LQ_SYNC_ALWAYS,
};

/// How to open a broker.
class BrokerOptions {
public:
    BrokerOptions() {
        lq_broker_options *o = nullptr;
        detail::check(lq_broker_options_new(&o));
        h_.reset(o);
    }
    BrokerOptions &data_dir(std::string_view dir) {
        return set(lq_broker_options_set_data_dir(h_.get(), detail::bytes(dir), dir.size()));
    }
    BrokerOptions &sync_mode(SyncMode mode,
                             std::chrono::milliseconds interval = std::chrono::milliseconds(0)) {
        return set(lq_broker_options_set_sync_mode(h_.get(), static_cast<uint32_t>(mode),
                                                   detail::ms(interval)));
    }
    BrokerOptions &segment_size(uint64_t bytes) {
        return set(lq_broker_options_set_segment_size(h_.get(), bytes));
    }
    BrokerOptions &default_quotas(const Quotas &q) {
        return set(lq_broker_options_set_default_quotas(h_.get(), q.raw()));
    }
    BrokerOptions &default_queue_options(const QueueOptions &o) {
        return set(lq_broker_options_set_default_queue_options(h_.get(), o.raw()));
    }
    /// This process alone may use the data directory (`Error` with LQ_LOCKED if
    /// another holds it); by default a later process attaches to the first.
    BrokerOptions &exclusive(bool yes) {
        return set(lq_broker_options_set_exclusive(h_.get(), yes));
    }
    /// Users besides this process's own allowed to attach while it hosts.
    BrokerOptions &allow_uids(const std::vector<uint32_t> &uids) {
        return set(lq_broker_options_set_allow_uids(h_.get(), uids.data(), uids.size()));
    }
    const lq_broker_options *raw() const noexcept { return h_.get(); }

private:
    BrokerOptions &set(lq_status s) {
        detail::check(s);
        return *this;
    }
    detail::Owned<lq_broker_options, lq_broker_options_free> h_;
};

// ---- messages ---------------------------------------------------------------------

/// A message to send (fluent setters). Sending consumes it (move it in).
class Message {
public:
    explicit Message(std::string_view body = {}) : Message(body.data(), body.size()) {}
    Message(const void *body, size_t len) {
        lq_message *m = nullptr;
        detail::check(lq_message_new(static_cast<const uint8_t *>(body), len, &m));
        h_.reset(m);
    }
    Message &name(std::string_view n) {
        return set(lq_message_set_name(h(), detail::bytes(n), n.size()));
    }
    Message &correlation_id(std::string_view c) {
        return set(lq_message_set_correlation_id(h(), detail::bytes(c), c.size()));
    }
    Message &header(std::string_view key, std::string_view value) {
        return set(lq_message_set_header(h(), detail::bytes(key), key.size(),
                                         detail::bytes(value), value.size()));
    }
    Message &priority(uint8_t p) { return set(lq_message_set_priority(h(), p)); }
    Message &ttl(std::chrono::milliseconds t) {
        return set(lq_message_set_ttl_ms(h(), detail::ms(t)));
    }
    Message &delay(std::chrono::milliseconds t) {
        return set(lq_message_set_delay_ms(h(), detail::ms(t)));
    }
    Message &persistent(bool yes) { return set(lq_message_set_persistent(h(), yes)); }
    uint64_t size() const {
        uint64_t n = 0;
        detail::check(lq_message_size(h_.get(), &n));
        return n;
    }
    /// Gives up ownership (for a C call that consumes the message).
    lq_message *release() {
        if (!h_) throw Error(LQ_INVALID_STATE, "the message was sent already");
        return h_.release();
    }

private:
    lq_message *h() {
        if (!h_) throw Error(LQ_INVALID_STATE, "the message was sent already");
        return h_.get();
    }
    Message &set(lq_status s) {
        detail::check(s);
        return *this;
    }
    detail::Owned<lq_message, lq_message_free> h_;
};

/// Read access to a received message (shared by Delivery and DeliveryView).
template <typename Derived>
class MessageReader {
public:
    uint64_t id() const { return get<uint64_t>(lq_delivery_id); }
    /// The body, zero-copy: valid until the delivery is acked, nacked or destroyed.
    Bytes body() const { return slice(lq_delivery_body); }
    std::optional<std::string_view> name() const { return text(lq_delivery_name); }
    std::optional<std::string_view> correlation_id() const {
        return text(lq_delivery_correlation_id);
    }
    std::optional<Bytes> header(std::string_view key) const {
        const uint8_t *p = nullptr;
        size_t n = 0;
        lq_status s = lq_delivery_header(raw(), detail::bytes(key), key.size(), &p, &n);
        if (s == LQ_NOT_FOUND) return std::nullopt;
        detail::check(s);
        return Bytes(p, n);
    }
    std::vector<std::pair<std::string_view, Bytes>> headers() const {
        size_t count = get<size_t>(lq_delivery_header_count);
        std::vector<std::pair<std::string_view, Bytes>> out;
        for (size_t i = 0; i < count; i++) {
            const uint8_t *k = nullptr, *v = nullptr;
            size_t kn = 0, vn = 0;
            detail::check(lq_delivery_header_at(raw(), i, &k, &kn, &v, &vn));
            out.emplace_back(Bytes(k, kn).str(), Bytes(v, vn));
        }
        return out;
    }
    uint8_t priority() const { return get<uint8_t>(lq_delivery_priority); }
    uint32_t delivery_count() const { return get<uint32_t>(lq_delivery_count); }
    bool persistent() const { return get<bool>(lq_delivery_is_persistent); }

protected:
    const lq_delivery *raw() const { return static_cast<const Derived *>(this)->raw_ptr(); }

private:
    template <typename T>
    T get(lq_status (*f)(const lq_delivery *, T *)) const {
        T v{};
        detail::check(f(raw(), &v));
        return v;
    }
    Bytes slice(lq_status (*f)(const lq_delivery *, const uint8_t **, size_t *)) const {
        const uint8_t *p = nullptr;
        size_t n = 0;
        detail::check(f(raw(), &p, &n));
        return Bytes(p, n);
    }
    std::optional<std::string_view> text(
        lq_status (*f)(const lq_delivery *, const uint8_t **, size_t *)) const {
        const uint8_t *p = nullptr;
        size_t n = 0;
        lq_status s = f(raw(), &p, &n);
        if (s == LQ_NOT_FOUND) return std::nullopt;
        detail::check(s);
        return Bytes(p, n).str();
    }
};

/// A received message, owned: settle with ack() / nack(); destroyed unsettled,
/// it is redelivered when its lease runs out. Move-only.
class Delivery : public MessageReader<Delivery> {
public:
    explicit Delivery(lq_delivery *d) : h_(d) {}
    void ack() { detail::check(lq_delivery_ack(h_.get())); }
    void nack() { detail::check(lq_delivery_nack(h_.get())); }
    void nack(std::chrono::milliseconds delay, std::string_view reason = {}) {
        detail::check(lq_delivery_nack_with(h_.get(), detail::ms(delay), detail::bytes(reason),
                                            reason.size()));
    }
    /// Renews the lease (0: the queue's lease time).
    void extend(std::chrono::milliseconds by = std::chrono::milliseconds(0)) {
        detail::check(lq_delivery_extend(h_.get(), detail::ms(by)));
    }
    const lq_delivery *raw_ptr() const noexcept { return h_.get(); }

private:
    detail::Owned<lq_delivery, lq_delivery_free> h_;
};

/// The message a pool handler gets: borrowed for the call, read-only.
class DeliveryView : public MessageReader<DeliveryView> {
public:
    explicit DeliveryView(const lq_delivery *d) : d_(d) {}
    const lq_delivery *raw_ptr() const noexcept { return d_; }

private:
    const lq_delivery *d_;
};

// ---- queues -----------------------------------------------------------------------

using QueueStats = lq_queue_stats;

/// A queue handle. Move-only; the C handle may be used from several threads.
class Queue {
public:
    explicit Queue(lq_queue *q) : h_(q) {}

    std::string_view name() const {
        const uint8_t *p = nullptr;
        size_t n = 0;
        detail::check(lq_queue_name(h_.get(), &p, &n));
        return Bytes(p, n).str();
    }
    /// Sends `msg`, consuming it (an lvalue is left spent). Throws on failure
    /// (LQ_FULL, LQ_QUOTA_EXCEEDED, LQ_MESSAGE_TOO_LARGE, LQ_CLOSED...).
    uint64_t send(Message &&msg) { return send(msg); }
    uint64_t send(Message &msg) {
        uint64_t id = 0;
        detail::check(lq_queue_send(h_.get(), msg.release(), &id));
        return id;
    }
    uint64_t send(Message &&msg, OnFull on_full,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
        return send(msg, on_full, timeout);
    }
    uint64_t send(Message &msg, OnFull on_full,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
        uint64_t id = 0;
        detail::check(lq_queue_send_with(h_.get(), msg.release(), static_cast<uint32_t>(on_full),
                                         detail::ms(timeout), &id));
        return id;
    }
    uint64_t send(std::string_view body) {
        uint64_t id = 0;
        detail::check(lq_queue_send_bytes(h_.get(), detail::bytes(body), body.size(), &id));
        return id;
    }
    std::vector<uint64_t> send_batch(std::vector<Message> msgs) {
        std::vector<lq_message *> raw;
        raw.reserve(msgs.size());
        for (auto &m : msgs) raw.push_back(m.release());
        std::vector<uint64_t> ids(msgs.size());
        detail::check(lq_queue_send_batch(h_.get(), raw.data(), raw.size(), ids.data()));
        return ids;
    }
    /// A ready message, or nullopt.
    std::optional<Delivery> try_receive() {
        lq_delivery *d = nullptr;
        lq_status s = lq_queue_try_receive(h_.get(), &d);
        return one(s, d);
    }
    /// Waits for a message (throws Error(LQ_CLOSED) if the queue closes).
    Delivery receive() {
        lq_delivery *d = nullptr;
        detail::check(lq_queue_receive(h_.get(), &d));
        return Delivery(d);
    }
    /// Waits at most `timeout` (forever: libqueue::forever).
    std::optional<Delivery> receive(std::chrono::milliseconds timeout) {
        lq_delivery *d = nullptr;
        lq_status s = lq_queue_receive_timeout(h_.get(), timeout_ms(timeout), &d);
        return one(s, d);
    }
    std::optional<Delivery> receive_auto_ack(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
        lq_delivery *d = nullptr;
        lq_status s = lq_queue_receive_auto_ack(h_.get(), timeout_ms(timeout), &d);
        return one(s, d);
    }
    std::vector<Delivery> receive_batch(size_t max, std::chrono::milliseconds timeout =
                                                        std::chrono::milliseconds(0)) {
        std::vector<lq_delivery *> raw(max);
        size_t n = 0;
        lq_status s = lq_queue_receive_batch(h_.get(), max, timeout_ms(timeout), raw.data(), &n);
        std::vector<Delivery> out;
        if (detail::nothing(s)) return out;
        detail::check(s);
        out.reserve(n);
        for (size_t i = 0; i < n; i++) out.emplace_back(raw[i]);
        return out;
    }
    std::vector<Delivery> peek(size_t max) {
        std::vector<lq_delivery *> raw(max);
        size_t n = 0;
        detail::check(lq_queue_peek(h_.get(), max, raw.data(), &n));
        std::vector<Delivery> out;
        out.reserve(n);
        for (size_t i = 0; i < n; i++) out.emplace_back(raw[i]);
        return out;
    }
    void cancel(uint64_t id) { detail::check(lq_queue_cancel(h_.get(), id)); }
    uint64_t purge() {
        uint64_t n = 0;
        detail::check(lq_queue_purge(h_.get(), &n));
        return n;
    }
    QueueStats stats() const {
        QueueStats s{};
        detail::check(lq_queue_get_stats(h_.get(), &s));
        return s;
    }
    void flush() { detail::check(lq_queue_flush(h_.get())); }
    /// Readable when a receive would find a message; owned by the queue.
    int fd() const {
        int fd = -1;
        detail::check(lq_queue_fd(h_.get(), &fd));
        return fd;
    }
    bool closed() const {
        bool c = false;
        detail::check(lq_queue_is_closed(h_.get(), &c));
        return c;
    }
    /// Closes this handle (lq_queue_close), from any thread: a receive or a send
    /// waiting in it in another thread throws Error(LQ_CLOSED) at once, later calls
    /// too. Destroy the Queue only once those calls have returned.
    void close() { detail::check(lq_queue_close(h_.get())); }
    const lq_queue *raw() const noexcept { return h_.get(); }

private:
    static std::optional<Delivery> one(lq_status s, lq_delivery *d) {
        if (detail::nothing(s)) return std::nullopt;
        detail::check(s);
        return Delivery(d);
    }
    detail::Owned<lq_queue, lq_queue_free> h_;
};

/// A topic: publish once, every subscription gets a copy. Move-only.
/// Counters of a topic (publishes, and those that went nowhere).
using TopicStats = lq_topic_stats;

class Topic {
public:
    explicit Topic(lq_topic *t) : h_(t) {}
    /// Closes this handle (lq_topic_close), from any thread: a publish waiting
    /// for room in a full subscription throws Error(LQ_CLOSED) at once, later
    /// calls too. Destroy the Topic only once those calls have returned.
    void close() { detail::check(lq_topic_close(h_.get())); }
    Queue subscribe(std::string_view queue) {
        lq_queue *q = nullptr;
        detail::check(lq_topic_subscribe(h_.get(), detail::bytes(queue), queue.size(), &q));
        return Queue(q);
    }
    Queue subscribe_name(std::string_view queue, std::string_view name) {
        lq_queue *q = nullptr;
        detail::check(lq_topic_subscribe_name(h_.get(), detail::bytes(queue), queue.size(),
                                              detail::bytes(name), name.size(), &q));
        return Queue(q);
    }
    Queue subscribe_header(std::string_view queue, std::string_view key, std::string_view value) {
        lq_queue *q = nullptr;
        detail::check(lq_topic_subscribe_header(h_.get(), detail::bytes(queue), queue.size(),
                                                detail::bytes(key), key.size(),
                                                detail::bytes(value), value.size(), &q));
        return Queue(q);
    }
    void unsubscribe(std::string_view queue) {
        detail::check(lq_topic_unsubscribe(h_.get(), detail::bytes(queue), queue.size()));
    }
    std::vector<std::string> subscriptions() const {
        lq_strings *s = nullptr;
        detail::check(lq_topic_subscriptions(h_.get(), &s));
        return detail::strings(s);
    }
    TopicStats stats() const {
        TopicStats s{};
        s.struct_size = sizeof s;
        detail::check(lq_topic_get_stats(h_.get(), &s));
        return s;
    }
    size_t publish(Message &&msg) { return publish(msg); }
    size_t publish(Message &msg) {
        size_t n = 0;
        detail::check(lq_topic_publish(h_.get(), msg.release(), &n));
        return n;
    }

private:
    detail::Owned<lq_topic, lq_topic_free> h_;
};

using NamespaceStats = lq_namespace_stats;

/// A tenant of a broker. Move-only.
class Namespace {
public:
    explicit Namespace(lq_namespace *ns) : h_(ns) {}
    Queue queue(std::string_view name) {
        return Queue(named<lq_queue>(lq_namespace_queue, name));
    }
    Queue create_queue(std::string_view name, const QueueOptions &opts) {
        lq_queue *q = nullptr;
        detail::check(lq_namespace_create_queue(h_.get(), detail::bytes(name), name.size(),
                                                opts.raw(), &q));
        return Queue(q);
    }
    std::optional<Queue> get_queue(std::string_view name) {
        lq_queue *q = nullptr;
        lq_status s = lq_namespace_get_queue(h_.get(), detail::bytes(name), name.size(), &q);
        if (s == LQ_NOT_FOUND) return std::nullopt;
        detail::check(s);
        return Queue(q);
    }
    void delete_queue(std::string_view name) {
        detail::check(lq_namespace_delete_queue(h_.get(), detail::bytes(name), name.size()));
    }
    Topic topic(std::string_view name) {
        return Topic(named<lq_topic>(lq_namespace_topic, name));
    }
    std::vector<std::string> queues() const { return list(false); }
    std::vector<std::string> topics() const { return list(true); }
    NamespaceStats stats() const {
        NamespaceStats s{};
        detail::check(lq_namespace_get_stats(h_.get(), &s));
        return s;
    }
    std::string_view name() const {
        const uint8_t *p = nullptr;
        size_t n = 0;
        detail::check(lq_namespace_name(h_.get(), &p, &n));
        return Bytes(p, n).str();
    }
    const lq_namespace *raw() const noexcept { return h_.get(); }

private:
    template <typename T>
    T *named(lq_status (*f)(const lq_namespace *, const uint8_t *, size_t, T **),
             std::string_view name) {
        T *out = nullptr;
        detail::check(f(h_.get(), detail::bytes(name), name.size(), &out));
        return out;
    }
    std::vector<std::string> list(bool topics) const {
        lq_strings *s = nullptr;
        detail::check(lq_namespace_list(h_.get(), topics, &s));
        return detail::strings(s);
    }
    detail::Owned<lq_namespace, lq_namespace_free> h_;
};

using RecoveryReport = lq_recovery_report;

/// One process attached to a shared data directory.
using HostClient = lq_host_client;

/// Who hosts a shared data directory (`Broker::host_info`).
struct HostInfo {
    uint32_t pid = 0;         ///< the host's process id
    uint64_t takeovers = 0;   ///< times the directory changed host
    uint64_t dropped = 0;     ///< clients dropped for misbehaving
    std::vector<HostClient> clients;  ///< processes attached now
};

/// One engine instance. Destroying it closes it. Move-only.
class Broker {
public:
    /// In memory, defaults.
    Broker() { open(nullptr); }
    explicit Broker(const BrokerOptions &opts) { open(opts.raw()); }

    /// `namespace` is a keyword: the namespace `name`, created if missing.
    Namespace ns(std::string_view name) {
        lq_namespace *n = nullptr;
        detail::check(lq_broker_namespace(h_.get(), detail::bytes(name), name.size(), &n));
        return Namespace(n);
    }
    Namespace create_namespace(std::string_view name, const Quotas &quotas) {
        lq_namespace *n = nullptr;
        detail::check(lq_broker_create_namespace(h_.get(), detail::bytes(name), name.size(),
                                                 quotas.raw(), &n));
        return Namespace(n);
    }
    std::optional<Namespace> get_namespace(std::string_view name) {
        lq_namespace *n = nullptr;
        lq_status s = lq_broker_get_namespace(h_.get(), detail::bytes(name), name.size(), &n);
        if (s == LQ_NOT_FOUND) return std::nullopt;
        detail::check(s);
        return Namespace(n);
    }
    /// A queue of the default namespace.
    Queue queue(std::string_view name) {
        lq_queue *q = nullptr;
        detail::check(lq_broker_queue(h_.get(), detail::bytes(name), name.size(), &q));
        return Queue(q);
    }
    std::vector<std::string> namespaces() const {
        lq_strings *s = nullptr;
        detail::check(lq_broker_list_namespaces(h_.get(), &s));
        return detail::strings(s);
    }
    void flush() { detail::check(lq_broker_flush(h_.get())); }
    void close() { detail::check(lq_broker_close(h_.get())); }
    bool closed() const {
        bool c = false;
        detail::check(lq_broker_is_closed(h_.get(), &c));
        return c;
    }
    /// What opening the data directory found (nullopt without one).
    std::optional<RecoveryReport> recovery_report() const {
        RecoveryReport r{};
        lq_status s = lq_broker_recovery_report(h_.get(), &r);
        if (s == LQ_NOT_FOUND) return std::nullopt;
        detail::check(s);
        return r;
    }
    std::vector<std::string> recovery_damage() const {
        std::vector<std::string> out;
        for (size_t i = 0;; i++) {
            const uint8_t *p = nullptr;
            size_t n = 0;
            lq_status s = lq_broker_recovery_damage(h_.get(), i, &p, &n);
            if (s == LQ_NOT_FOUND) return out;
            detail::check(s);
            out.emplace_back(reinterpret_cast<const char *>(p), n);
        }
    }
    /// Whether another process hosts the data directory and this broker is
    /// attached to it.
    bool attached() const {
        bool a = false;
        detail::check(lq_broker_is_attached(h_.get(), &a));
        return a;
    }
    /// The host's pid and counters and the attached processes (throws
    /// LQ_INVALID_STATE for a broker that shares no data directory).
    HostInfo host_info() const {
        std::vector<HostClient> c(8);
        for (;;) {
            lq_host_info h{};
            h.struct_size = sizeof h;
            detail::check(lq_broker_host_info(h_.get(), &h, c.data(), c.size(), sizeof(HostClient)));
            if (h.clients <= c.size()) {
                c.resize(static_cast<size_t>(h.clients));
                return HostInfo{h.pid, h.takeovers, h.dropped, std::move(c)};
            }
            c.resize(static_cast<size_t>(h.clients) + 8);  // more came: again, larger
        }
    }
    const lq_broker *raw() const noexcept { return h_.get(); }

private:
    void open(const lq_broker_options *o) {
        lq_broker *b = nullptr;
        detail::check(lq_broker_open(o, &b));
        h_.reset(b);
    }
    detail::Owned<lq_broker, lq_broker_free> h_;
};

// ---- the consumer pool --------------------------------------------------------------

using PoolStats = lq_pool_stats;

namespace detail {

/// A handler: returns the reply (nullopt: none); throws to fail.
using Handler = std::function<std::optional<std::string>(const DeliveryView &)>;

/// Wraps a lambda returning void, something string-like, or an optional string.
template <typename F>
Handler make_handler(F &&f) {
    using R = std::invoke_result_t<F &, const DeliveryView &>;
    if constexpr (std::is_void_v<R>) {
        return [f = std::forward<F>(f)](const DeliveryView &d) -> std::optional<std::string> {
            f(d);
            return std::nullopt;
        };
    } else {
        return [f = std::forward<F>(f)](const DeliveryView &d) -> std::optional<std::string> {
            return std::optional<std::string>(f(d));
        };
    }
}

/// The C callback: runs the C++ handler; never lets an exception out.
inline int32_t trampoline(void *userdata, const lq_delivery *d, lq_reply *reply) noexcept {
    auto *h = static_cast<Handler *>(userdata);
    try {
        std::optional<std::string> r = (*h)(DeliveryView(d));
        if (r) lq_reply_set_body(reply, bytes(*r), r->size());
        return 0;
    } catch (const std::exception &e) {
        lq_reply_set_error(reply, reinterpret_cast<const uint8_t *>(e.what()),
                           std::strlen(e.what()));
    } catch (...) {
        static const char unknown[] = "unknown C++ exception";
        lq_reply_set_error(reply, reinterpret_cast<const uint8_t *>(unknown),
                           sizeof unknown - 1);
    }
    return 1;
}

}  // namespace detail

/// A running pool. Destroying it stops it (waiting for running handlers), then
/// releases the handlers. Move-only.
class Pool {
public:
    Pool(lq_pool *p, std::vector<std::unique_ptr<detail::Handler>> handlers)
        : handlers_(std::move(handlers)), h_(p) {}
    PoolStats stats() const {
        PoolStats s{};
        detail::check(lq_pool_get_stats(h_.get(), &s));
        return s;
    }
    /// Stops: waits for running handlers (at most `timeout`; those still running
    /// then give their message back). Returns how many were given back.
    size_t stop(std::chrono::milliseconds timeout = forever) {
        size_t returned = 0;
        detail::check(lq_pool_stop(h_.get(), timeout_ms(timeout), &returned));
        return returned;
    }

private:
    // Declared first, destroyed last: the pool stops before its handlers go.
    std::vector<std::unique_ptr<detail::Handler>> handlers_;
    detail::Owned<lq_pool, lq_pool_free> h_;
};

/// Configures a pool on a queue: handlers by message name (lambdas taking
/// `const DeliveryView&`, returning void, a reply string or an optional one;
/// throwing fails the message), a default handler, the size (throttle).
/// Handlers run on the pool's worker threads, up to `size` at once.
class PoolBuilder {
public:
    PoolBuilder(Namespace &ns, std::string_view queue) {
        lq_pool_builder *b = nullptr;
        detail::check(lq_pool_builder_new(ns.raw(), detail::bytes(queue), queue.size(), &b));
        h_.reset(b);
    }
    PoolBuilder &size(size_t n) {
        detail::check(lq_pool_builder_set_size(h_.get(), n));
        return *this;
    }
    PoolBuilder &backoff(std::chrono::milliseconds base, std::chrono::milliseconds max) {
        detail::check(lq_pool_builder_set_backoff_ms(h_.get(), detail::ms(base), detail::ms(max)));
        return *this;
    }
    template <typename F>
    PoolBuilder &handler(std::string_view name, F &&f) {
        auto h = std::make_unique<detail::Handler>(detail::make_handler(std::forward<F>(f)));
        detail::check(lq_pool_builder_add_handler(h_.get(), detail::bytes(name), name.size(),
                                                  &detail::trampoline, h.get()));
        handlers_.push_back(std::move(h));
        return *this;
    }
    template <typename F>
    PoolBuilder &default_handler(F &&f) {
        auto h = std::make_unique<detail::Handler>(detail::make_handler(std::forward<F>(f)));
        detail::check(
            lq_pool_builder_set_default_handler(h_.get(), &detail::trampoline, h.get()));
        handlers_.push_back(std::move(h));
        return *this;
    }
    /// Starts the workers; the builder is spent.
    Pool start() {
        lq_pool *p = nullptr;
        detail::check(lq_pool_builder_start(h_.release(), &p));
        return Pool(p, std::move(handlers_));
    }

private:
    std::vector<std::unique_ptr<detail::Handler>> handlers_;
    detail::Owned<lq_pool_builder, lq_pool_builder_free> h_;
};

// ---- RPC ----------------------------------------------------------------------------

/// An RPC client with a private reply queue. Move-only.
class RpcClient {
public:
    explicit RpcClient(Namespace &ns) {
        lq_rpc_client *c = nullptr;
        detail::check(lq_rpc_client_new(ns.raw(), &c));
        h_.reset(c);
    }
    /// The reply, or nullopt on timeout; a failed handler throws Error(LQ_REMOTE).
    std::optional<Delivery> call(std::string_view queue, Message &&msg,
                                 std::chrono::milliseconds timeout) {
        return call(queue, msg, timeout);
    }
    std::optional<Delivery> call(std::string_view queue, Message &msg,
                                 std::chrono::milliseconds timeout) {
        lq_delivery *d = nullptr;
        lq_status s = lq_rpc_call(h_.get(), detail::bytes(queue), queue.size(), msg.release(),
                                  timeout_ms(timeout), &d);
        if (s == LQ_TIMEOUT) return std::nullopt;
        detail::check(s);
        return Delivery(d);
    }
    /// Closes the client (lq_rpc_client_close), from any thread: a call waiting
    /// for its reply throws Error(LQ_CLOSED) at once, later calls too. Destroy the
    /// client only once those calls have returned.
    void close() { detail::check(lq_rpc_client_close(h_.get())); }
    uint64_t cast(std::string_view queue, Message &&msg) { return cast(queue, msg); }
    uint64_t cast(std::string_view queue, Message &msg) {
        uint64_t id = 0;
        detail::check(lq_rpc_cast(h_.get(), detail::bytes(queue), queue.size(), msg.release(), &id));
        return id;
    }
    size_t fanout(std::string_view topic, Message &&msg) { return fanout(topic, msg); }
    size_t fanout(std::string_view topic, Message &msg) {
        size_t n = 0;
        detail::check(
            lq_rpc_fanout(h_.get(), detail::bytes(topic), topic.size(), msg.release(), &n));
        return n;
    }

private:
    detail::Owned<lq_rpc_client, lq_rpc_client_free> h_;
};

// ---- bridges (store-and-forward to a remote engine; docs/bridges.md) ------------------

#ifdef LQ_HAVE_BRIDGE
/// A bridge's counters and health (`Bridge::stats`).
struct BridgeStats {
    bool connected = false;         ///< the connection to the remote is up now
    uint64_t forwarded = 0;         ///< local messages the remote stored
    uint64_t received = 0;          ///< remote messages sent to their local queue
    uint64_t pending_outbound = 0;  ///< messages in the forwarded local queues
    uint64_t pending_inbound = 0;   ///< messages waiting at the remote, as it last said
    uint64_t retries = 0;           ///< publishes (and inbound sends) tried again
    uint64_t duplicates = 0;        ///< publishes the remote reported as duplicates
    uint64_t dead_lettered = 0;     ///< messages dead-lettered locally
    std::optional<std::string> last_error;  ///< stays after recovery
    std::optional<std::chrono::system_clock::time_point> last_error_at;
    /// When the current run of failures began (nullopt: progress since).
    std::optional<std::chrono::system_clock::time_point> error_since;
};

class BridgeBuilder;

/// A running bridge. Destroying it stops it (in-flight publishes are confirmed
/// or given back to their queue). Move-only; `stats()` from any thread.
class Bridge {
public:
    explicit Bridge(lq_bridge *b) : h_(b) {}
    /// A builder for a bridge to NATS JetStream at `url` (throws
    /// Error(LQ_INVALID_ARGUMENT) for a malformed one).
    static BridgeBuilder nats(std::string_view url);
    /// A builder for a bridge to RabbitMQ at `url`
    /// (`amqp://user:password@host:port/vhost`; throws Error(LQ_INVALID_ARGUMENT)
    /// for a malformed one). The exchanges and remote queues must exist.
    static BridgeBuilder rabbitmq(std::string_view url);
    /// The counters now (after `stop()`: the final ones).
    BridgeStats stats() const {
        lq_bridge_stats s{};
        s.struct_size = sizeof s;
        detail::check(lq_bridge_get_stats(h_.get(), &s));
        BridgeStats out;
        out.connected = s.connected;
        out.forwarded = s.forwarded;
        out.received = s.received;
        out.pending_outbound = s.pending_outbound;
        out.pending_inbound = s.pending_inbound;
        out.retries = s.retries;
        out.duplicates = s.duplicates;
        out.dead_lettered = s.dead_lettered;
        if (s.last_error[0] != '\0') out.last_error = std::string(s.last_error);
        out.last_error_at = when(s.last_error_at_ms);
        out.error_since = when(s.error_since_ms);
        return out;
    }
    /// Stops the bridge and waits for its thread (at most about the ack
    /// timeout). Idempotent.
    void stop() {
        lq_status s = lq_bridge_stop(h_.get());
        if (s != LQ_INVALID_STATE) detail::check(s);
    }
    const lq_bridge *raw() const noexcept { return h_.get(); }

private:
    static std::optional<std::chrono::system_clock::time_point> when(uint64_t ms) {
        if (ms == 0) return std::nullopt;
        return std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::milliseconds(static_cast<int64_t>(ms))));
    }
    detail::Owned<lq_bridge, lq_bridge_free> h_;
};

/// The configuration of a bridge (`Bridge::nats(url)`, `Bridge::rabbitmq(url)`),
/// each setter checked when called (throws Error), then `start(broker)`, which
/// spends it. Queues are "queue" (default namespace) or "namespace/queue",
/// created if missing. `stream`, `receive_durable` and `duplicate_window` are
/// for NATS only, `forward_exchange` for RabbitMQ only (otherwise they throw
/// Error(LQ_INVALID_ARGUMENT)).
class BridgeBuilder {
public:
    /// Forwards the local `queue` to the remote `subject` (a stream must take it);
    /// RabbitMQ: to the default exchange with `subject` as the routing key (the
    /// remote queue of that name).
    BridgeBuilder &forward(std::string_view queue, std::string_view subject) {
        detail::check(lq_bridge_builder_forward(b(), detail::bytes(queue), queue.size(),
                                                detail::bytes(subject), subject.size()));
        return *this;
    }
    /// RabbitMQ: forwards the local `queue` to `exchange` ("" the default one)
    /// with `routing_key`.
    BridgeBuilder &forward_exchange(std::string_view queue, std::string_view exchange,
                                    std::string_view routing_key) {
        detail::check(lq_bridge_builder_forward_exchange(
            b(), detail::bytes(queue), queue.size(), detail::bytes(exchange), exchange.size(),
            detail::bytes(routing_key), routing_key.size()));
        return *this;
    }
    /// Feeds the local `queue` from `subject` through a durable consumer
    /// (RabbitMQ: from the remote queue `subject`, with manual acks).
    BridgeBuilder &receive(std::string_view subject, std::string_view queue) {
        detail::check(lq_bridge_builder_receive(b(), detail::bytes(subject), subject.size(),
                                                detail::bytes(queue), queue.size()));
        return *this;
    }
    BridgeBuilder &receive_durable(std::string_view subject, std::string_view queue,
                                   std::string_view durable) {
        detail::check(lq_bridge_builder_receive_durable(
            b(), detail::bytes(subject), subject.size(), detail::bytes(queue), queue.size(),
            detail::bytes(durable), durable.size()));
        return *this;
    }
    /// Creates the stream `name` taking `subjects` at start if none of that name exists.
    BridgeBuilder &stream(std::string_view name, const std::vector<std::string_view> &subjects) {
        for (std::string_view s : subjects)
            detail::check(lq_bridge_builder_stream(b(), detail::bytes(name), name.size(),
                                                   detail::bytes(s), s.size()));
        return *this;
    }
    BridgeBuilder &identity(std::string_view id) {
        detail::check(lq_bridge_builder_identity(b(), detail::bytes(id), id.size()));
        return *this;
    }
    BridgeBuilder &window(size_t n) {
        detail::check(lq_bridge_builder_window(b(), n));
        return *this;
    }
    BridgeBuilder &backoff(std::chrono::milliseconds first, std::chrono::milliseconds max) {
        detail::check(lq_bridge_builder_backoff_ms(b(), detail::ms(first), detail::ms(max)));
        return *this;
    }
    BridgeBuilder &max_age(std::chrono::milliseconds age) {
        detail::check(lq_bridge_builder_max_age_ms(b(), detail::ms(age)));
        return *this;
    }
    BridgeBuilder &connect_timeout(std::chrono::milliseconds t) {
        detail::check(lq_bridge_builder_connect_timeout_ms(b(), detail::ms(t)));
        return *this;
    }
    BridgeBuilder &ack_timeout(std::chrono::milliseconds t) {
        detail::check(lq_bridge_builder_ack_timeout_ms(b(), detail::ms(t)));
        return *this;
    }
    BridgeBuilder &duplicate_window(std::chrono::milliseconds w) {
        detail::check(lq_bridge_builder_duplicate_window_ms(b(), detail::ms(w)));
        return *this;
    }
    BridgeBuilder &connect_in_background(bool yes = true) {
        detail::check(lq_bridge_builder_connect_in_background(b(), yes));
        return *this;
    }
    /// Starts the bridge (see lq_bridge_start for the errors); the builder is spent.
    Bridge start(const Broker &broker) {
        lq_bridge *out = nullptr;
        lq_bridge_builder *spent = b();
        h_.release();  // lq_bridge_start consumes it, whatever it returns
        detail::check(lq_bridge_start(spent, broker.raw(), &out));
        return Bridge(out);
    }

private:
    friend class Bridge;
    explicit BridgeBuilder(lq_bridge_builder *b) : h_(b) {}
    lq_bridge_builder *b() {
        if (!h_) throw Error(LQ_INVALID_STATE, "the builder is spent: start() consumed it");
        return h_.get();
    }
    detail::Owned<lq_bridge_builder, lq_bridge_builder_free> h_;
};

inline BridgeBuilder Bridge::nats(std::string_view url) {
    lq_bridge_builder *b = nullptr;
    detail::check(lq_bridge_nats_new(detail::bytes(url), url.size(), &b));
    return BridgeBuilder(b);
}
inline BridgeBuilder Bridge::rabbitmq(std::string_view url) {
    lq_bridge_builder *b = nullptr;
    detail::check(lq_bridge_rabbitmq_new(detail::bytes(url), url.size(), &b));
    return BridgeBuilder(b);
}
#endif  // LQ_HAVE_BRIDGE

}  // namespace libqueue

#endif  // LIBQUEUE_HPP
