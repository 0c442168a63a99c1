// Two threads ping-pong one byte over a pair of pipes ROUNDS times (default 100000): a
// context-switch-heavy workload. Prints elapsed_s= on stderr.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static int ping[2], pong[2];
static long rounds = 100000;
static void *ponger(void *a) {
    pthread_setname_np(pthread_self(), "ponger");
    char c;
    for (long i = 0; i < rounds; i++) {
        if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1) return (void *)1;
    }
    return 0;
}
int main(int argc, char **argv) {
    if (argc > 1) rounds = atol(argv[1]);
    if (pipe(ping) || pipe(pong)) { perror("pipe"); return 1; }
    struct timespec s, e;
    clock_gettime(CLOCK_MONOTONIC, &s);
    pthread_t t;
    pthread_create(&t, 0, ponger, 0);
    char c = 'x';
    for (long i = 0; i < rounds; i++) {
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) return 1;
    }
    void *r;
    pthread_join(t, &r);
    clock_gettime(CLOCK_MONOTONIC, &e);
    fprintf(stderr, "elapsed_s=%.6f rounds=%ld\n",
            (e.tv_sec - s.tv_sec) + (e.tv_nsec - s.tv_nsec) / 1e9, rounds);
    return r != 0;
}
