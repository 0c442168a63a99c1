// Small always_inline helpers in a hot loop: -O2 -g leaves them only as inlined subroutines
// (DW_TAG_inlined_subroutine) inside crunch(), for the inline-frame tests.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace work {

__attribute__((always_inline)) static inline uint64_t mix_step(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 29;
    return x;
}

__attribute__((always_inline)) static inline uint64_t hash_word(uint64_t x) {
    for (int i = 0; i < 16; i++) {
        x = mix_step(x + static_cast<uint64_t>(i));
    }
    return x;
}

__attribute__((noinline)) uint64_t crunch(uint64_t seed, long rounds) {
    uint64_t acc = seed;
    for (long r = 0; r < rounds; r++) {
        acc += hash_word(acc ^ static_cast<uint64_t>(r));
    }
    return acc;
}

}  // namespace work

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    auto start = std::chrono::steady_clock::now();
    uint64_t acc = 1;
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
           < seconds) {
        acc = work::crunch(acc, 200000);
    }
    fprintf(stderr, "%llu\n", static_cast<unsigned long long>(acc));
    return 0;
}
