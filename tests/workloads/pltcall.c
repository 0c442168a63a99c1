// Calls rand_r (a small libc function, through this program's PLT) in a tight loop for
// argv[1] seconds (default 2): the PLT stub takes a visible share of the samples.
#include <stdlib.h>
#include <time.h>
__attribute__((noinline)) unsigned long call_libc(unsigned long n) {
    unsigned long total = 0;
    unsigned seed = (unsigned)n;
    for (unsigned long i = 0; i < n; i++) total += (unsigned long)rand_r(&seed);
    return total;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 2;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long s = 0;
    do {
        s += call_libc(100000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
    return (int)(s & 1) * 0;
}
