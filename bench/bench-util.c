/* bench-util.c - see bench-util.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "engine/engine.h"

double bu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bu_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

json_object *bu_get(json_object *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o;
         k = strtok_r(NULL, ".", &save))
        o = json_object_object_get(o, k);
    return o;
}

uint64_t bu_u64(json_object *o, const char *path)
{
    json_object *v = bu_get(o, path);
    return v ? json_object_get_uint64(v) : 0;
}

static void die(const char *what, const livemig_error *err)
{
    fprintf(stderr, "bench: %s: %s\n", what, err->desc);
    exit(1);
}

int bu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("bench: no free loopback port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

void bu_pair_start(bu_pair *p, const char *spec, livemig_tracker_kind tracker)
{
    livemig_error err = { 0 };
    memset(p, 0, sizeof(*p));
    p->src = livemig_new(&err);
    p->dst = livemig_new(&err);
    if (!p->src || !p->dst)
        die("engine", &err);
    if (!(p->psrc = lm_pattern_new(spec, p->src, false, tracker, &err)) ||
        !(p->pdst = lm_pattern_new(spec, p->dst, true, tracker, &err)))
        die(spec, &err);
    snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%d", bu_free_port());
    if (!livemig_incoming(p->dst, p->uri, &err))
        die("incoming", &err);
}

void bu_pair_free(bu_pair *p)
{
    lm_pattern_halt(p->psrc);
    lm_pattern_halt(p->pdst);
    livemig_free(p->src);
    livemig_free(p->dst);
    lm_pattern_free(p->psrc);
    lm_pattern_free(p->pdst);
}

void bu_params(livemig *lm, const char *json)
{
    livemig_error err = { 0 };
    json_object *o = json_tokener_parse(json);
    if (!o || !lm_tunables_set_parameters(lm_engine_tunables(lm), o, &err))
        die(json, &err);
    json_object_put(o);
}

void bu_caps(livemig *lm, const char *json)
{
    livemig_error err = { 0 };
    json_object *o = json_tokener_parse(json);
    if (!o || !lm_tunables_set_capabilities(lm_engine_tunables(lm), o, &err))
        die(json, &err);
    json_object_put(o);
}

void bu_migrate(bu_pair *p)
{
    livemig_error err = { 0 };
    if (!livemig_migrate(p->src, p->uri, &err))
        die("migrate", &err);
}

bool bu_wait_status(livemig *lm, livemig_status want, double timeout_s)
{
    double end = bu_now() + timeout_s;
    while (bu_now() < end) {
        livemig_status s = livemig_get_status(lm);
        if (s == want)
            return true;
        if (s == LIVEMIG_STATUS_FAILED || s == LIVEMIG_STATUS_CANCELLED)
            return false;
        usleep(2000);
    }
    return false;
}
