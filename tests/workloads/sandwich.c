// The sandwich view's deeper levels, for argv[1] seconds (default 1): hub() is reached through
// mid_x() and mid_y() from top_1() and top_2() in different mixes (via mid_x: 3 parts from top_1,
// 1 from top_2; via mid_y: 1 from top_1, 3 from top_2) and calls step_p() and step_q(), which
// call grind(). Outside hub, mid_x() also burns CPU in other() for top_2, and main() calls
// step_p() directly, where it runs polish() instead: the callers of mid_x (the callees of
// step_p) over the whole run differ from those on the paths through hub. Every call is followed
// by a store, so none is a tail call and every frame stays on the stack.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define NOI __attribute__((noinline, noclone))
static volatile unsigned long sink;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
NOI void grind(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 3);
    sink += acc;
}
NOI void polish(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 5);
    sink += acc;
}
NOI void other(unsigned long n) {
    volatile unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += i ^ (acc >> 7);
    sink += acc;
}
NOI void step_p(unsigned long n, int direct) { if (direct) polish(n); else grind(n); sink++; }
NOI void step_q(unsigned long n) { grind(n); sink++; }
NOI void hub(unsigned long n, int p) { if (p) step_p(n, 0); else step_q(n); sink++; }
NOI void mid_x(unsigned long n, int p, int own) { if (own) other(n); else hub(n, p); sink++; }
NOI void mid_y(unsigned long n, int p) { hub(n, p); sink++; }
NOI void top_1(unsigned long n) { mid_x(3 * n, 1, 0); mid_y(n, 0); sink++; }
NOI void top_2(unsigned long n) { mid_x(n, 0, 0); mid_y(3 * n, 1); mid_x(4 * n, 0, 1); sink++; }
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0, end = now() + secs;
    const unsigned long n = 20000;
    while (now() < end) { top_1(n); top_2(n); step_p(2 * n, 1); }
    printf("%lu\n", sink & 1);
    return 0;
}
