// TCP on loopback: "tcpserver" accepts and blocks in recv until "tcpclient" sends, 600 ms later.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
static int lfd;
static struct sockaddr_in addr;
static void *server(void *a) {
    pthread_setname_np(pthread_self(), "tcpserver");
    int c = accept(lfd, 0, 0);
    char b;
    if (c < 0 || recv(c, &b, 1, 0) != 1) return (void *)1;
    close(c);
    return 0;
}
static void *client(void *a) {
    pthread_setname_np(pthread_self(), "tcpclient");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) return (void *)1;
    usleep(600000);
    send(s, "x", 1, 0);
    usleep(50000);
    close(s);
    return 0;
}
int main(void) {
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;  // an ephemeral port
    socklen_t len = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, len) || listen(lfd, 1)
        || getsockname(lfd, (struct sockaddr *)&addr, &len)) { perror("socket"); return 1; }
    pthread_t s, c;
    void *rs, *rc;
    pthread_create(&s, 0, server, 0);
    usleep(100000);
    pthread_create(&c, 0, client, 0);
    pthread_join(s, &rs); pthread_join(c, &rc);
    return rs || rc;
}
