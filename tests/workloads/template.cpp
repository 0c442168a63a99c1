// A hot C++ template method: the profile must show it demangled as ns::Type<int>::method(int).
#include <cstdio>
#include <cstdlib>
namespace ns {
template <typename T> struct Type {
    T acc = 0;
    __attribute__((noinline)) T method(int n) {
        volatile T x = acc;
        for (int i = 0; i < n; i++) x = x + static_cast<T>(i ^ (int)(x) >> 2);
        acc = x;
        return x;
    }
};
}  // namespace ns
int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    ns::Type<int> t;
    long s = 0;
    for (int r = 0; r < rounds; r++) s += t.method(100000);
    printf("%ld\n", s & 1);
    return 0;
}
