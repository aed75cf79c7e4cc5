/* For tests against tests/http/http_test_server (a scripted HTTP server on 127.0.0.1):
 * start it, learn its port, stop it. Shared by test_http.c and test_notify.c. */
#ifndef ETL_TEST_HTTP_SERVER_H
#define ETL_TEST_HTTP_SERVER_H

#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* $ETL_HTTP_TEST_SERVER, else http/http_test_server beside this test's directory (where
 * a CMake build puts it). */
static inline const char *http_server_path(void)
{
    static char buf[4096];
    const char *env = getenv("ETL_HTTP_TEST_SERVER");
    if (env && *env)
        return env;
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 64);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    char *dir = dirname(buf);
    memmove(buf, dir, strlen(dir) + 1);
    strcat(buf, "/http/http_test_server");
    return buf;
}

/* Start the server (it stops by itself after 120 s idle or when we exit). Returns its
 * pid and sets *out_port, or -1 after saying why on stderr (test names the caller).
 * Proxies from the environment are dropped: loopback test traffic goes nowhere else. */
static inline pid_t http_server_start(const char *test, int *out_port)
{
    static const char *const proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                          "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL};
    for (int i = 0; proxies[i]; i++)
        unsetenv(proxies[i]);
    const char *srv = http_server_path();
    if (!srv || access(srv, X_OK) != 0) {
        fprintf(stderr, "%s: no test server at %s; set ETL_HTTP_TEST_SERVER\n", test,
                srv ? srv : "(unknown)");
        return -1;
    }
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(srv, srv, "--idle", "120", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t have = 0;
    while (have < sizeof line - 1) {
        ssize_t r = read(fds[0], line + have, 1);
        if (r <= 0 || line[have] == '\n')
            break;
        have++;
    }
    close(fds[0]);
    *out_port = atoi(line);
    if (pid < 0 || *out_port <= 0) {
        fprintf(stderr, "%s: the test server did not start (%s)\n", test, srv);
        return -1;
    }
    return pid;
}

static inline void http_server_stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

#endif
