// Two phases a driver can put marks between: burns CPU in work_a for argv[1] seconds (default
// 0.6), prints "a done", waits for a line on stdin, burns CPU in work_b as long, prints
// "b done", waits for another line, exits. The waits are blocked (off-CPU), so a mark put
// while the program waits falls cleanly between the phases.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) unsigned long work_a(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 3);
    return acc;
}
__attribute__((noinline)) unsigned long work_b(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 5);
    return acc;
}
static void wait_line(void) { int c; while ((c = getchar()) != EOF && c != '\n') {} }
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.6, end;
    unsigned long s = 0;
    for (end = now() + secs; now() < end;) s += work_a(100000);
    printf("a done\n"); fflush(stdout);
    wait_line();
    for (end = now() + secs; now() < end;) s += work_b(100000);
    printf("b done\n"); fflush(stdout);
    wait_line();
    return (int)(s & 1) * 0;
}
