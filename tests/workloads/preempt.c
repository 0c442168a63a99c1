// Three busy threads pinned to one CPU: each is preempted (runnable, off CPU) while the others
// run. Each burns 0.5 s of its own CPU time.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
static double cpu_s(void) {
    struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static void *busy(void *a) {
    char name[16];
    snprintf(name, sizeof name, "busy%ld", (long)a);
    pthread_setname_np(pthread_self(), name);
    volatile unsigned long x = 0;
    double start = cpu_s();
    while (cpu_s() - start < 0.5) for (int i = 0; i < 10000; i++) x += i;
    return 0;
}
int main(void) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    // pin the process before creating the threads: they inherit the affinity
    if (sched_setaffinity(0, sizeof one, &one) != 0) { perror("sched_setaffinity"); return 1; }
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, busy, (void *)i);
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    return 0;
}
