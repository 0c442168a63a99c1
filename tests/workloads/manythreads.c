// argv[1] threads (default 300) for argv[2] seconds (default 30): argv[3] of them (default 2)
// spin, the rest sleep in naps of argv[4] microseconds (default 50000). Prints "ready" once
// every thread has started.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double secs = 30;
static int nap_us = 50000;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) unsigned long spin_hot(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 3);
    return acc;
}
static void *spinner(void *a) { double end = now() + secs; unsigned long s = 0;
    while (now() < end) s += spin_hot(200000); return (void *)s; }
static void *sleeper(void *a) { double end = now() + secs;
    while (now() < end) usleep(nap_us); return a; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 300;
    if (argc > 2) secs = atof(argv[2]);
    int busy = argc > 3 ? atoi(argv[3]) : 2;
    if (argc > 4) nap_us = atoi(argv[4]);
    pthread_t *t = calloc(n, sizeof *t);
    for (int i = 0; i < n; i++) {
        pthread_attr_t at; pthread_attr_init(&at); pthread_attr_setstacksize(&at, 64 << 10);
        pthread_create(&t[i], &at, i < busy ? spinner : sleeper, 0);
    }
    printf("ready\n"); fflush(stdout);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    return 0;
}
