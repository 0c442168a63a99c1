// One function of about 14,000 instructions (an unrolled body, as big as an interpreter's main
// loop) burning CPU for argv[1] seconds (default 0.5): annotate's table gets a huge function.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
#define A acc = (acc * 31 + (acc >> 7)) ^ i;
#define A10 A A A A A A A A A A
#define A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10
#define A1000 A100 A100 A100 A100 A100 A100 A100 A100 A100 A100
__attribute__((noinline)) unsigned long big_function(unsigned long n) {
    volatile unsigned long acc = n;
    for (unsigned long i = 0; i < 4; i++) { A1000 A1000 }
    return acc;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.5, end = now() + secs;
    unsigned long s = 0;
    while (now() < end) s += big_function(s);
    printf("%lu\n", s & 1);
    return 0;
}
