/*
 * zkload: the benchmark's load generator, on ZooKeeper's single-threaded C client library
 * (libzookeeper_st). One process drives many sessions from one poll() loop; every session
 * keeps `depth` asynchronous requests in flight, so neither the network round trip nor
 * this process's own overhead paces the server.
 *
 * Protocol with the harness (bench/harness.py): after its own setup this program prints
 * "START" (the harness samples the server's CPU then), runs the measured window, prints
 * "END" (the second sample), then one JSON line with the results on stdout.
 *
 * Usage: zkload HOSTS WORKLOAD [-c conns] [-d depth] [-s bytes] [-w warmup_s] [-t secs]
 *                              [-n count] [-r rounds] [-T session_timeout_ms] [-W write_pct]
 *                              [-R ops_per_s] [-P tag] [-L latency_log]
 * Workloads: get set exists children mix createdelete ephseq multi session fanout idle populate
 *
 * HOSTS is one HOST:PORT or an ensemble's comma-separated list. Session i connects to server
 * i mod N first (the list rotated, with the library's random permutation turned off), so the
 * sessions spread evenly over the servers; the JSON's "per_server" counts where they landed.
 * After setup every session syncs, so a follower has the setup's nodes before it is read.
 *
 * -n with populate or set: issue exactly that many requests, then stop (the window is the time
 *    they took). -W: percent of writes in `mix` (default 10). -R: pace the whole process to
 *    that many requests per second (a fixed offered load; a request waits for a free slot).
 * -P: a tag in every node name this process creates, so several processes can share a tree.
 * -L: write "start_monotonic_s latency_us" per measured request to that file (the harness lines
 *    requests up with what the server did meanwhile; CLOCK_MONOTONIC is Python's monotonic).
 * SIGUSR1 ends the measured window early (the harness stops a paced run when it has seen
 * what it waited for).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

enum wl { W_GET, W_SET, W_EXISTS, W_CHILDREN, W_MIX, W_CREATEDELETE, W_EPHSEQ, W_MULTI,
          W_SESSION, W_FANOUT, W_IDLE, W_POPULATE };
static const char *WL_NAMES[] = {"get", "set", "exists", "children", "mix", "createdelete",
                                 "ephseq", "multi", "session", "fanout", "idle", "populate"};

/* ---- options ---- */
static const char *host;
static enum wl workload;
static int conns = 16, depth = 16, data_size = 100, rounds = 5, timeout_ms = 30000;
static int write_pct = 10;
static double warmup_s = 1.0, measure_s = 5.0, rate = 0;
static long count = 0;
static const char *tag = "";
static const char *lat_log_path;
static volatile sig_atomic_t stop_requested;
static void on_usr1(int sig) { (void)sig; stop_requested = 1; }

/* ---- servers: one rotation of the host list per server ---- */
static char **rotations;
static int nservers;
static void split_hosts(void) {
    char *copy = strdup(host), *save = NULL;
    char *parts[64];
    for (char *t = strtok_r(copy, ",", &save); t && nservers < 64; t = strtok_r(NULL, ",", &save))
        parts[nservers++] = t;
    if (!nservers) { fprintf(stderr, "no host in %s\n", host); exit(2); }
    rotations = calloc((size_t)nservers, sizeof *rotations);
    for (int r = 0; r < nservers; r++) {
        rotations[r] = calloc(strlen(host) + 2, 1);
        for (int k = 0; k < nservers; k++) {
            if (k) strcat(rotations[r], ",");
            strcat(rotations[r], parts[(r + k) % nservers]);
        }
    }
    free(copy);
}
static const char *hosts_for(int i) { return rotations[i % nservers]; }

/* ---- clock and latency samples ---- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static uint32_t *lat;      /* microseconds, one per completed op in the window */
static double *lat_at;     /* with -L: when each of those ops was issued */
static size_t lat_n, lat_cap;
static long ops, errors, first_error;
static int measuring;      /* inside the measured window */
static int stopping;       /* window over: issue no new requests */

static void record(double started, int rc) {
    if (rc != ZOK) {
        errors++;
        if (!first_error) first_error = rc;
    }
    if (!measuring) return;
    ops++;
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) { perror("realloc"); exit(2); }
        if (lat_log_path) {
            lat_at = realloc(lat_at, lat_cap * sizeof *lat_at);
            if (!lat_at) { perror("realloc"); exit(2); }
        }
    }
    if (lat_at) lat_at[lat_n] = started;
    double us = (now_s() - started) * 1e6;
    lat[lat_n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

/* ---- sessions ---- */
typedef struct conn conn;
typedef struct slot {
    conn *c;
    int index;
    double started;
    long seq;
    int phase;                      /* createdelete: 0 create in flight, 1 delete */
    char path[128], path2[128];
    char out1[128], out2[128];      /* create results of multi */
    zoo_op_t mops[5];
    zoo_op_result_t mres[5];
} slot;
struct conn {
    zhandle_t *zh;
    int index, connected, in_flight;
    char node[64];                  /* this session's own data node */
    slot *slots;
};
static conn *cs;
static int ncs;
static char *payload;
static long connected_count;
static long watch_events;

static void global_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
    (void)zh; (void)path;
    conn *c = ctx;
    if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_CONNECTED_STATE && !c->connected) {
            c->connected = 1;
            connected_count++;
        } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
            fprintf(stderr, "session %d lost: state %d\n", c->index, state);
            exit(3);
        }
    } else if (type == ZOO_CHANGED_EVENT) {
        watch_events++;
    }
}

static conn *open_conns(int n) {
    conn *arr = calloc((size_t)n, sizeof *arr);
    for (int i = 0; i < n; i++) {
        arr[i].index = i;
        snprintf(arr[i].node, sizeof arr[i].node, "/bench/n%s%d", tag, i);
        arr[i].zh = zookeeper_init(hosts_for(i), global_watcher, timeout_ms, 0, &arr[i], 0);
        if (!arr[i].zh) { perror("zookeeper_init"); exit(2); }
    }
    return arr;
}

/* One turn of the event loop over every session: poll, then let the library read/write. */
static struct pollfd *pfds;
static int pfd_cap;
static double last_sweep;
static void release(void);
static int paced_wait_ms(int wait);
static void pump(int max_wait_ms) {
    release();
    if (pfd_cap < ncs) {
        pfd_cap = ncs;
        pfds = realloc(pfds, (size_t)pfd_cap * sizeof *pfds);
    }
    int wait = max_wait_ms;
    for (int i = 0; i < ncs; i++) {
        int fd = -1, interest = 0;
        struct timeval tv = {0, 0};
        if (!cs[i].zh) { pfds[i].fd = -1; continue; }
        int rc = zookeeper_interest(cs[i].zh, &fd, &interest, &tv);
        if (rc != ZOK && rc != ZCONNECTIONLOSS && rc != ZINVALIDSTATE) {
            fprintf(stderr, "zookeeper_interest: %s\n", zerror(rc));
        }
        pfds[i].fd = fd;
        pfds[i].events = (short)(((interest & ZOOKEEPER_READ) ? POLLIN : 0) |
                                 ((interest & ZOOKEEPER_WRITE) ? POLLOUT : 0));
        pfds[i].revents = 0;
        int ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
        if (fd >= 0 && ms < wait) wait = ms;
    }
    wait = paced_wait_ms(wait);
    if (wait < 0) wait = 0;
    int n = poll(pfds, (nfds_t)ncs, wait);
    if (n < 0 && errno != EINTR) { perror("poll"); exit(2); }
    /* Sessions with no IO still need a call now and then for pings and connect timeouts. */
    double t = now_s();
    int sweep = t - last_sweep > 0.1;
    if (sweep) last_sweep = t;
    for (int i = 0; i < ncs; i++) {
        if (!cs[i].zh) continue;
        int ev = 0;
        if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= ZOOKEEPER_READ;
        if (pfds[i].revents & POLLOUT) ev |= ZOOKEEPER_WRITE;
        if (ev || sweep) zookeeper_process(cs[i].zh, ev);
    }
    release();
}

static void wait_connected(long want) {
    double deadline = now_s() + 120;
    while (connected_count < want) {
        if (now_s() > deadline) { fprintf(stderr, "sessions did not connect\n"); exit(3); }
        pump(50);
    }
}

/* ---- setup (synchronous style: issue asynchronously, pump until all answered) ---- */
static long setup_pending;
static void setup_done(int rc, const void *data) {
    (void)data;
    if (rc != ZOK && rc != ZNODEEXISTS) fprintf(stderr, "setup: %s\n", zerror(rc));
    setup_pending--;
}
static void setup_done_str(int rc, const char *v, const void *d) { (void)v; setup_done(rc, d); }
static void setup_done_stat(int rc, const struct Stat *s, const void *d) {
    (void)s;
    setup_done(rc, d);
}
static void setup_drain(void) {
    double deadline = now_s() + 300;
    while (setup_pending > 0) {
        if (now_s() > deadline) { fprintf(stderr, "setup timed out\n"); exit(3); }
        pump(50);
    }
}
static void ensure(zhandle_t *zh, const char *path, const char *data, int len) {
    setup_pending++;
    zoo_acreate(zh, path, data, len, &ZOO_OPEN_ACL_UNSAFE, 0, setup_done_str, NULL);
}
static void setup_tree(void) {
    zhandle_t *zh = cs[0].zh;
    ensure(zh, "/bench", "", 0);
    ensure(zh, "/bench/cd", "", 0);
    ensure(zh, "/bench/eph", "", 0);
    ensure(zh, "/bench/kids", "", 0);
    ensure(zh, "/bench/multi", "", 0);
    ensure(zh, "/bench/w", "", 0);
    ensure(zh, "/bench/mem", "", 0);
    setup_drain();
    for (int i = 0; i < ncs && workload != W_FANOUT; i++) {
        ensure(zh, cs[i].node, payload, data_size);
        setup_pending++;
        zoo_aset(zh, cs[i].node, payload, data_size, -1, setup_done_stat, NULL);
        if (setup_pending > 500) setup_drain();
    }
    if (workload == W_CHILDREN) {
        char p[64];
        for (int i = 0; i < 1000; i++) {
            snprintf(p, sizeof p, "/bench/kids/child-%04d", i);
            ensure(zh, p, "", 0);
            if (setup_pending > 500) setup_drain();
        }
    }
    setup_drain();
    /* Every session syncs: on an ensemble its server then has all of the above. */
    for (int i = 0; i < ncs; i++) {
        setup_pending++;
        zoo_async(cs[i].zh, "/bench", setup_done_str, NULL);
    }
    setup_drain();
}

/* Where the sessions landed, as a JSON member for finish(). */
static char per_server[4096];
static void count_per_server(void) {
    char *names[64];
    long counts[64];
    int n = 0;
    for (int i = 0; i < ncs; i++) {
        const char *cur = cs[i].zh ? zoo_get_current_server(cs[i].zh) : NULL;
        if (!cur) continue;
        int k = 0;
        while (k < n && strcmp(names[k], cur)) k++;
        if (k == n && n < 64) { names[n] = strdup(cur); counts[n++] = 0; }
        if (k < n) counts[k]++;
    }
    size_t len = (size_t)snprintf(per_server, sizeof per_server, ", \"per_server\": {");
    for (int k = 0; k < n && len < sizeof per_server - 100; k++)
        len += (size_t)snprintf(per_server + len, sizeof per_server - len, "%s\"%s\": %ld",
                                k ? ", " : "", names[k], counts[k]);
    snprintf(per_server + len, sizeof per_server - len, "}");
}

/* ---- the request loop of the throughput workloads ---- */
static void issue(slot *s);
static void done_stat(int rc, const struct Stat *st, const void *data) {
    (void)st;
    slot *s = (slot *)data;
    s->c->in_flight--;
    record(s->started, rc);
    issue(s);
}
static void done_data(int rc, const char *v, int len, const struct Stat *st, const void *data) {
    (void)v; (void)len;
    done_stat(rc, st, data);
}
static void done_void(int rc, const void *data) { done_stat(rc, NULL, data); }
static void done_str(int rc, const char *v, const void *data) {
    (void)v;
    done_stat(rc, NULL, data);
}
static void done_children(int rc, const struct String_vector *sv, const void *data) {
    (void)sv;
    done_stat(rc, NULL, data);
}
/* create+delete: the create's answer issues the delete of the same node. */
static void cd_created(int rc, const char *v, const void *data);
static void cd_deleted(int rc, const void *data) {
    slot *s = (slot *)data;
    s->c->in_flight--;
    record(s->started, rc);
    issue(s);
}
static void cd_created(int rc, const char *v, const void *data) {
    (void)v;
    slot *s = (slot *)data;
    record(s->started, rc);
    if (rc != ZOK) { s->c->in_flight--; issue(s); return; }
    s->started = now_s();
    zoo_adelete(s->c->zh, s->path, -1, cd_deleted, s);
}

static unsigned rng_state = 12345;
static unsigned rng(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* -R: slots whose next request waits for its turn, in FIFO order. */
static slot **waitq;
static size_t wq_head, wq_len, wq_cap;
static double next_at;
static long issued;
static void start(slot *s);
static void issue(slot *s) {
    if (stopping) return;
    if (rate <= 0) { start(s); return; }
    if (wq_len == wq_cap) {
        size_t cap = wq_cap ? wq_cap * 2 : 1024;
        slot **q = calloc(cap, sizeof *q);
        for (size_t k = 0; k < wq_len; k++) q[k] = waitq[(wq_head + k) % wq_cap];
        free(waitq);
        waitq = q, wq_cap = cap, wq_head = 0;
    }
    waitq[(wq_head + wq_len++) % wq_cap] = s;
}
static void release(void) {
    if (rate <= 0 || !wq_len) return;
    double t = now_s();
    /* After a stall, catch up by at most 50 ms worth of requests, not with a burst. */
    if (next_at < t - 0.05) next_at = t - 0.05;
    while (wq_len && next_at <= t && !stopping) {
        slot *s = waitq[wq_head];
        wq_head = (wq_head + 1) % wq_cap, wq_len--;
        next_at += 1.0 / rate;
        start(s);
    }
}
static int paced_wait_ms(int wait) {
    if (rate <= 0 || !wq_len) return wait;
    int ms = (int)((next_at - now_s()) * 1000.0 + 0.999);
    return ms < wait ? ms : wait;
}
static int count_limited(void) { return workload == W_POPULATE || (workload == W_SET && count > 0); }

static void start(slot *s) {
    if (stopping) return;
    if (count_limited() && issued >= count) return;
    issued++;
    conn *c = s->c;
    zhandle_t *zh = c->zh;
    s->started = now_s();
    s->seq++;
    c->in_flight++;
    int rc = ZOK;
    switch (workload) {
    case W_GET:
        rc = zoo_aget(zh, c->node, 0, done_data, s);
        break;
    case W_SET:
        rc = zoo_aset(zh, c->node, payload, data_size, -1, done_stat, s);
        break;
    case W_EXISTS:
        rc = zoo_aexists(zh, c->node, 0, done_stat, s);
        break;
    case W_CHILDREN:
        rc = zoo_aget_children(zh, "/bench/kids", 0, done_children, s);
        break;
    case W_MIX:
        if ((int)(rng() % 100) < write_pct)
            rc = zoo_aset(zh, c->node, payload, data_size, -1, done_stat, s);
        else
            rc = zoo_aget(zh, c->node, 0, done_data, s);
        break;
    case W_CREATEDELETE:
        snprintf(s->path, sizeof s->path, "/bench/cd/c%s%d-%d-%ld", tag, c->index, s->index,
                 s->seq);
        rc = zoo_acreate(zh, s->path, payload, data_size, &ZOO_OPEN_ACL_UNSAFE, 0, cd_created, s);
        break;
    case W_EPHSEQ:
        rc = zoo_acreate(zh, "/bench/eph/e-", payload, data_size, &ZOO_OPEN_ACL_UNSAFE,
                         ZOO_EPHEMERAL | ZOO_SEQUENCE, done_str, s);
        break;
    case W_POPULATE:
        snprintf(s->path, sizeof s->path, "/bench/mem/m%s%d-%d-%ld", tag, c->index, s->index,
                 s->seq);
        rc = zoo_acreate(zh, s->path, payload, data_size, &ZOO_OPEN_ACL_UNSAFE, 0, done_str, s);
        break;
    case W_MULTI:
        /* Five ops in one txn: create two nodes, set this session's node, delete both. */
        snprintf(s->path, sizeof s->path, "/bench/multi/a%s%d-%d-%ld", tag, c->index, s->index,
                 s->seq);
        snprintf(s->path2, sizeof s->path2, "/bench/multi/b%s%d-%d-%ld", tag, c->index, s->index,
                 s->seq);
        zoo_create_op_init(&s->mops[0], s->path, payload, data_size, &ZOO_OPEN_ACL_UNSAFE, 0,
                           s->out1, sizeof s->out1);
        zoo_create_op_init(&s->mops[1], s->path2, payload, data_size, &ZOO_OPEN_ACL_UNSAFE, 0,
                           s->out2, sizeof s->out2);
        zoo_set_op_init(&s->mops[2], c->node, payload, data_size, -1, NULL);
        zoo_delete_op_init(&s->mops[3], s->path, -1);
        zoo_delete_op_init(&s->mops[4], s->path2, -1);
        rc = zoo_amulti(zh, 5, s->mops, s->mres, done_void, s);
        break;
    default:
        break;
    }
    if (rc != ZOK) {
        fprintf(stderr, "issue: %s\n", zerror(rc));
        exit(3);
    }
}

static long total_in_flight(void) {
    long n = 0;
    for (int i = 0; i < ncs; i++) n += cs[i].in_flight;
    return n;
}

static void run_window(void) {
    for (int i = 0; i < ncs; i++) {
        cs[i].slots = calloc((size_t)depth, sizeof(slot));
        for (int j = 0; j < depth; j++) {
            cs[i].slots[j].c = &cs[i];
            cs[i].slots[j].index = j;
        }
    }
    for (int j = 0; j < depth; j++)
        for (int i = 0; i < ncs; i++) issue(&cs[i].slots[j]);
    double t0 = now_s();
    while (now_s() - t0 < warmup_s) pump(rate > 0 ? 2 : 10);
}

/* ---- output ---- */
/* Closing thousands of sessions at once makes the library log every reset: not news. */
static void quiet(void) {
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) zoo_set_log_stream(devnull);
}
static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}
static double pct(double p) {
    if (!lat_n) return 0;
    size_t i = (size_t)(p * (double)(lat_n - 1) + 0.5);
    return lat[i] / 1000.0;
}
static void finish(double seconds, const char *extra) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec * 1e-6;
    if (lat_log_path) {
        FILE *f = fopen(lat_log_path, "w");
        if (!f) { perror(lat_log_path); exit(2); }
        for (size_t i = 0; i < lat_n; i++) fprintf(f, "%.6f %u\n", lat_at[i], lat[i]);
        fclose(f);
    }
    qsort(lat, lat_n, sizeof *lat, cmp_u32);
    printf("{\"workload\": \"%s\", \"ops\": %ld, \"seconds\": %.6f, \"ops_per_s\": %.1f, "
           "\"errors\": %ld, \"first_error\": %ld, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"p999_ms\": %.3f, \"max_ms\": %.3f, \"client_cpu_s\": %.3f, "
           "\"client_maxrss_kb\": %ld%s%s}\n",
           WL_NAMES[workload], ops, seconds, seconds > 0 ? ops / seconds : 0.0, errors,
           first_error, pct(0.50), pct(0.99), pct(0.999), lat_n ? lat[lat_n - 1] / 1000.0 : 0,
           cpu, ru.ru_maxrss, per_server, extra ? extra : "");
    fflush(stdout);
}
static void mark(const char *what) {
    printf("%s\n", what);
    fflush(stdout);
}

static void throughput(void) {
    cs = open_conns(conns);
    ncs = conns;
    wait_connected(conns);
    count_per_server();
    setup_tree();
    if (count_limited()) {
        mark("START");
        measuring = 1;
        double t0 = now_s();
        run_window();
        while (total_in_flight() > 0) pump(10);
        double t1 = now_s();
        mark("END");
        finish(t1 - t0, NULL);
        return;
    }
    run_window();
    mark("START");
    measuring = 1;
    double t0 = now_s();
    while (now_s() - t0 < measure_s && !stop_requested) pump(rate > 0 ? 2 : 10);
    double t1 = now_s();
    measuring = 0;
    mark("END");
    stopping = 1;
    double deadline = now_s() + 30;
    while (total_in_flight() > 0 && now_s() < deadline) pump(10);
    finish(t1 - t0, NULL);
}

/* Session establishment: `conns` handshakes in flight; each established session is dropped
 * and replaced by a new one. The library's zookeeper_close waits for the closeSession's
 * answer (one fsync) before it returns, which would make this a measure of sequential closes;
 * so the socket is shut instead and the server expires the session after its timeout (run
 * with -T 4000, the least tickTime 2000 allows): it still pays for a close per session. */
static void drop(zhandle_t *zh) {
    int fd = -1, interest = 0;
    struct timeval tv;
    if (zookeeper_interest(zh, &fd, &interest, &tv) == ZOK && fd >= 0) {
        shutdown(fd, SHUT_RDWR);
        zookeeper_process(zh, ZOOKEEPER_READ); /* sees the end: no longer connected */
    }
    zookeeper_close(zh);
}
static void sessions(void) {
    quiet(); /* every dropped session would be logged */
    ncs = conns;
    cs = calloc((size_t)ncs, sizeof *cs);
    double *started = calloc((size_t)ncs, sizeof(double));
    double t0 = now_s(), t_start = 0;
    for (int i = 0; i < ncs; i++) {
        cs[i].index = i;
        started[i] = now_s();
        cs[i].zh = zookeeper_init(hosts_for(i), global_watcher, timeout_ms, 0, &cs[i], 0);
    }
    while (1) {
        double t = now_s();
        if (!measuring && t - t0 >= warmup_s) {
            mark("START");
            measuring = 1;
            t_start = t;
        }
        if (measuring && t - t_start >= measure_s) break;
        pump(10);
        for (int i = 0; i < ncs; i++) {
            if (!cs[i].connected) continue;
            record(started[i], ZOK);
            drop(cs[i].zh);
            cs[i].connected = 0;
            started[i] = now_s();
            cs[i].zh = zookeeper_init(hosts_for(i), global_watcher, timeout_ms, 0, &cs[i], 0);
        }
    }
    double t1 = now_s();
    measuring = 0;
    mark("END");
    quiet();
    for (int i = 0; i < ncs; i++) zookeeper_close(cs[i].zh);
    finish(t1 - t_start, NULL);
}

/* Watch fan-out: `count` sessions watch /bench/w; one setData; time until all are told. */
static void exists_armed(int rc, const struct Stat *st, const void *data) {
    (void)st; (void)data;
    if (rc != ZOK) errors++;
    setup_pending--;
}
static void fanout(void) {
    ncs = (int)count + 1;
    cs = open_conns(ncs);
    wait_connected(ncs);
    count_per_server();
    setup_tree();
    double *times = calloc((size_t)rounds, sizeof(double));
    mark("START");
    double t0 = now_s();
    for (int r = 0; r < rounds; r++) {
        for (int i = 1; i < ncs; i++) {
            setup_pending++;
            zoo_aexists(cs[i].zh, "/bench/w", 1, exists_armed, NULL);
        }
        setup_drain();
        watch_events = 0;
        double t = now_s();
        setup_pending++;
        zoo_aset(cs[0].zh, "/bench/w", payload, data_size, -1, setup_done_stat, NULL);
        double deadline = t + 120;
        while (watch_events < count) {
            if (now_s() > deadline) { fprintf(stderr, "fan-out timed out\n"); exit(3); }
            pump(10);
        }
        times[r] = now_s() - t;
        setup_drain();
    }
    double t1 = now_s();
    mark("END");
    measuring = 1;
    for (int r = 0; r < rounds; r++) {
        record(now_s() - times[r], ZOK); /* a sample of the fan-out time itself */
    }
    double sum = 0;
    for (int r = 0; r < rounds; r++) sum += times[r];
    char extra[128];
    snprintf(extra, sizeof extra, ", \"watchers\": %ld, \"rounds\": %d, \"notifications_per_s\": %.1f", count, rounds,
             sum > 0 ? (double)count * rounds / sum : 0.0);
    ops = 0; /* ops/s here is notifications per second of fan-out time, in `extra` */
    finish(t1 - t0, extra);
    quiet();
    for (int i = 0; i < ncs; i++) zookeeper_close(cs[i].zh);
}

/* Idle sessions: `count` sessions connected and pinging; the harness measures the server. */
static void idle(void) {
    ncs = (int)count;
    cs = open_conns(ncs);
    wait_connected(ncs);
    count_per_server();
    double t = now_s();
    while (now_s() - t < warmup_s) pump(100);
    mark("START");
    double t0 = now_s();
    while (now_s() - t0 < measure_s) pump(100);
    double t1 = now_s();
    mark("END");
    quiet();
    char extra[64];
    snprintf(extra, sizeof extra, ", \"sessions\": %ld", count);
    finish(t1 - t0, extra);
    for (int i = 0; i < ncs; i++) zookeeper_close(cs[i].zh);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: zkload HOST:PORT WORKLOAD [options]\n");
        return 2;
    }
    host = argv[1];
    int found = 0;
    for (size_t i = 0; i < sizeof WL_NAMES / sizeof *WL_NAMES; i++)
        if (!strcmp(argv[2], WL_NAMES[i])) { workload = (enum wl)i; found = 1; }
    if (!found) { fprintf(stderr, "unknown workload %s\n", argv[2]); return 2; }
    int opt;
    optind = 3;
    while ((opt = getopt(argc, argv, "c:d:s:w:t:n:r:T:W:R:P:L:")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 's': data_size = atoi(optarg); break;
        case 'w': warmup_s = atof(optarg); break;
        case 't': measure_s = atof(optarg); break;
        case 'n': count = atol(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'T': timeout_ms = atoi(optarg); break;
        case 'W': write_pct = atoi(optarg); break;
        case 'R': rate = atof(optarg); break;
        case 'P': tag = optarg; break;
        case 'L': lat_log_path = optarg; break;
        default: return 2;
        }
    }
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    split_hosts();
    zoo_deterministic_conn_order(1); /* session i's first server is i mod N (hosts_for) */
    signal(SIGUSR1, on_usr1);
    /* Many sessions need many descriptors: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    payload = malloc((size_t)data_size + 1);
    memset(payload, 'x', (size_t)data_size);
    switch (workload) {
    case W_SESSION: sessions(); break;
    case W_FANOUT: fanout(); break;
    case W_IDLE: idle(); break;
    default: throughput(); break;
    }
    return 0;
}
