// Burns CPU in spin_hot() for argv[1] seconds (default 10), argv[2] threads (default 1).
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static double secs = 10;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) unsigned long spin_hot(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 3);
    return acc;
}
static void *run(void *a) { double end = now() + secs; unsigned long s = 0;
    while (now() < end) s += spin_hot(200000); return (void *)s; }
int main(int argc, char **argv) {
    if (argc > 1) secs = atof(argv[1]);
    int n = argc > 2 ? atoi(argv[2]) : 1;
    pthread_t t[64];
    for (int i = 1; i < n && i < 64; i++) pthread_create(&t[i], 0, run, 0);
    run(0);
    for (int i = 1; i < n && i < 64; i++) pthread_join(t[i], 0);
    return 0;
}
