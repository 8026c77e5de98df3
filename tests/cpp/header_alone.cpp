// The C++ header compiles on its own (first and only include).
#include "libqueue.hpp"
