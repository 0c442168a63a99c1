// Two named threads one after the other: "early" burns CPU in early_work, then "late" burns CPU
// in late_work, argv[1] seconds each (default 0.8). The timeline and threads scope them apart.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static double secs = 0.8;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) unsigned long early_work(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 3);
    return acc;
}
__attribute__((noinline)) unsigned long late_work(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 5);
    return acc;
}
static void *early(void *a) { pthread_setname_np(pthread_self(), "early");
    double end = now() + secs; unsigned long s = 0;
    while (now() < end) s += early_work(100000); return (void *)s; }
static void *late(void *a) { pthread_setname_np(pthread_self(), "late");
    double end = now() + secs; unsigned long s = 0;
    while (now() < end) s += late_work(100000); return (void *)s; }
int main(int argc, char **argv) {
    if (argc > 1) secs = atof(argv[1]);
    pthread_t t;
    pthread_create(&t, 0, early, 0); pthread_join(t, 0);
    pthread_create(&t, 0, late, 0); pthread_join(t, 0);
    return 0;
}
