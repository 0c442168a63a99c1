// A process whose threads have hostile names: terminal escapes (an OSC window title ended by
// BEL, clear-screen and cursor-home), an 8-bit CSI (U+009B) and a byte that is not UTF-8.
// Each thread burns CPU for argv[1] seconds (default 1); further arguments are ignored (the
// tests put escapes there too).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

static double secs = 1;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) unsigned long names_burn(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 3);
    return acc;
}

static void *burn(void *name) {
    if (name) pthread_setname_np(pthread_self(), name);
    double end = now() + secs;
    unsigned long s = 0;
    while (now() < end) s += names_burn(100000);
    return (void *)s;
}

int main(int argc, char **argv) {
    if (argc > 1) secs = atof(argv[1]);
    prctl(PR_SET_NAME, "\033]0;pwned\a", 0, 0, 0);
    pthread_t a, b;
    pthread_create(&a, 0, burn, "\033[2J\033[Hclr");
    pthread_create(&b, 0, burn, "c1\xc2\x9b" "31m\xff");
    burn(0);
    pthread_join(a, 0);
    pthread_join(b, 0);
    return 0;
}
