// Stack shapes a DWARF unwinder must get through, each ending in a hot leaf that runs for
// about the given number of milliseconds: "signal" (a loop inside a signal handler),
// "noreturn" (a call to a noreturn function as the last instruction of its caller),
// "recurse" (a non-tail recursion, 40 deep unless a third argument says otherwise).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long ms = 1500;
static volatile unsigned long sink;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

__attribute__((noinline)) static void burn(void) {
    double end = now_ms() + ms;
    while (now_ms() < end)
        for (int i = 0; i < 20000; i++) sink += i * 7;
}

__attribute__((noinline)) void spin_in_handler(int sig) {
    (void)sig;
    double end = now_ms() + ms;
    while (now_ms() < end)
        for (int i = 0; i < 20000; i++) sink += i;
}

__attribute__((noinline, noreturn)) void spin_forever_then_exit(void) {
    burn();
    printf("%lu\n", sink);
    exit(0);
}

__attribute__((noinline)) void dispatch(int n) {
    if (n > 0)
        spin_forever_then_exit();  // noreturn: the call is the last instruction here
    sink += n;
}

__attribute__((noinline)) int recurse(int depth) {
    volatile char pad[120];
    pad[0] = (char)depth;
    if (depth == 0) {
        burn();
        return 1;
    }
    int r = recurse(depth - 1);
    return r + pad[0];
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "recurse";
    if (argc > 2) ms = atol(argv[2]);
    int depth = argc > 3 ? atoi(argv[3]) : 40;
    if (!strcmp(mode, "signal")) {
        signal(SIGUSR1, spin_in_handler);
        raise(SIGUSR1);
    } else if (!strcmp(mode, "noreturn")) {
        dispatch(argc);
    } else {
        printf("%d\n", recurse(depth));
    }
    return 0;
}
