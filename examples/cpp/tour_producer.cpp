// The C++ producer of the tour (`make demo`, examples/python/tour.py).
//
// Built as a shared object that is NOT linked against libqueue: the Python
// process that runs the tour has already loaded the library (through cffi) and
// made its symbols global, so every lq_* call below binds to that one copy, and
// the broker handle Python passes in is used as it is: one broker, one process,
// two languages. `tour_cpp_library` says where the lq_* symbols came from, so
// the tour can check that it is the file Python loaded.
//
// The producer takes its own handles (namespace, one queue per thread) from the
// borrowed broker with the C++ wrapper (bindings/cpp/include/libqueue.hpp) and
// sends named messages with headers from `threads` std::threads at once; cffi
// releases the GIL around the call, so Python keeps running beside it.
#include "libqueue.hpp"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace {

const char *const NAMES[6] = {"create_load_balancer", "update_listener",     "create_pool",
                              "create_member",        "update_health_monitor", "delete_member"};

void copy_error(const char *what, char *err, size_t errlen) {
    if (err && errlen) std::snprintf(err, errlen, "%s", what);
}

}  // namespace

extern "C" {

/// The file the lq_* symbols of this object resolved to.
const char *tour_cpp_library(void) {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&lq_version), &info) && info.dli_fname)
        return info.dli_fname;
    return "?";
}

/// Sends `threads` x `per_thread` messages to `ns`/`queue` of the borrowed
/// `broker`; every `poison_every`-th message of a thread (0: none) carries the
/// header `poison` (its handler fails). Returns the number sent, or -1 with the
/// reason in `err`.
long tour_cpp_produce(const lq_broker *broker, const char *ns_name, const char *queue,
                      unsigned threads, unsigned per_thread, unsigned poison_every, char *err,
                      size_t errlen) {
    try {
        lq_namespace *raw = nullptr;
        libqueue::detail::check(
            lq_broker_get_namespace(broker, libqueue::detail::bytes(ns_name),
                                    std::char_traits<char>::length(ns_name), &raw));
        libqueue::Namespace ns(raw);  // our own handle on the Python-owned broker
        std::vector<libqueue::Queue> queues;
        for (unsigned t = 0; t < threads; t++) queues.push_back(ns.queue(queue));

        std::atomic<long> sent{0};
        std::string first_error;
        std::atomic<bool> failed{false};
        std::vector<std::thread> workers;
        for (unsigned t = 0; t < threads; t++) {
            workers.emplace_back([&, t] {
                libqueue::Queue &q = queues[t];
                std::string body, seq;
                try {
                    for (unsigned i = 0; i < per_thread && !failed; i++) {
                        seq = std::to_string(t) + "-" + std::to_string(i);
                        body = "{\"lb\": \"lb-" + seq + "\", \"from\": \"cpp\"}";
                        libqueue::Message m(body);
                        m.name(NAMES[i % 6]).header("producer", "cpp").header("seq", seq)
                            .priority(static_cast<uint8_t>(i % 97 == 0 ? 7 : 4));
                        if (poison_every && i % poison_every == poison_every - 1)
                            m.header("poison", "1");
                        q.send(std::move(m));
                        sent.fetch_add(1, std::memory_order_relaxed);
                    }
                } catch (const std::exception &e) {
                    if (!failed.exchange(true)) first_error = e.what();
                }
            });
        }
        for (auto &w : workers) w.join();
        if (failed) {
            copy_error(first_error.c_str(), err, errlen);
            return -1;
        }
        return sent.load();
    } catch (const std::exception &e) {
        copy_error(e.what(), err, errlen);
        return -1;
    }
}

}  // extern "C"
