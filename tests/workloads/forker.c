// Forks a child process that burns CPU in child_work(), while the parent burns in parent_work().
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) unsigned long child_work(double secs) {
    volatile unsigned long acc = 0; double end = now() + secs;
    while (now() < end) for (int i = 0; i < 100000; i++) acc += i;
    return acc;
}
__attribute__((noinline)) unsigned long parent_work(double secs) {
    volatile unsigned long acc = 0; double end = now() + secs;
    while (now() < end) for (int i = 0; i < 100000; i++) acc += i;
    return acc;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    pid_t p = fork();
    if (p == 0) { child_work(secs); _exit(0); }
    parent_work(secs);
    int st; waitpid(p, &st, 0);
    return argc > 2 ? atoi(argv[2]) : 0;
}
