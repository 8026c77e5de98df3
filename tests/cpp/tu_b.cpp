#include "libqueue.hpp"

#include <cstdio>
#include <string>

std::string send_from_a(libqueue::Queue &q);

int main() {
    libqueue::Broker broker;
    auto q = broker.queue("two-tu");
    std::string v = send_from_a(q);
    auto d = q.try_receive();
    if (!d || d->body().str() != "from a" || v != LQ_VERSION_STRING) {
        std::fprintf(stderr, "two translation units: wrong result\n");
        return 1;
    }
    d->ack();
    std::printf("two translation units: ok\n");
    return 0;
}
