// Two translation units include libqueue.hpp and link into one program (no
// duplicate symbols: everything in the header is inline or a template).
#include "libqueue.hpp"

std::string send_from_a(libqueue::Queue &q) {
    q.send(libqueue::Message("from a").name("a"));
    return std::string(libqueue::version());
}
