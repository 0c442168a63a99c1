// A thread that works in short bursts and sleeps 200 ms between them, three times: three
// 200 ms stalls (reason sleep; sample gaps of a busy thread when off-CPU capture is off).
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>
static double cpu_s(void) {
    struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
__attribute__((noinline)) static void burn(double s) {
    volatile unsigned long x = 0;
    double start = cpu_s();
    while (cpu_s() - start < s) for (int i = 0; i < 10000; i++) x += i;
}
__attribute__((noinline)) static void nap(void) {
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, 0);
}
static void *napper(void *a) {
    (void)a;
    pthread_setname_np(pthread_self(), "napper");
    for (int i = 0; i < 3; i++) {
        burn(0.06);
        nap();
    }
    burn(0.06);
    return 0;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, 0, napper, 0);
    pthread_join(t, 0);
    return 0;
}
