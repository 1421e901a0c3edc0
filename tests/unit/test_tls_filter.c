/* TLS as a filter over a yamux stream: two yamux engines wired back to back
 * in memory, a client filter on one end and a server filter on the other.
 * Handshake with ALPN and SNI, 8 MiB byte-exact both ways with readers that
 * pause (memory stays bounded), half-close, abort, a refused certificate,
 * and mutual TLS accepted and refused. Every callback is counted; every
 * wait is a bounded number of loop turns.
 *
 * Over 600 lines: one test program per module, as tests/unit/meson.build
 * builds them; its cases share the fixtures above them. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "dev_certs.h"
#include "host.h"
#include "mux_wire.h"
#include "stream.h"
#include "tls.h"
#include "yamux.h"

#define BULK        (8u * 1024u * 1024u)
#define PAUSE_EVERY (1024u * 1024u)
#define PAUSE_TURNS 20
#define MAX_TURNS   200000
/* Plaintext written and not yet read, at most: the yamux window, the
 * queues of both streams and a few records. */
#define IN_FLIGHT_MAX (2u * 1024u * 1024u)

static uv_loop_t loop;
static bw_io_t *io;

/* One end of the TLS connection, as a plugin would hold it. */
typedef struct end {
    const char *name;
    bw_stream_t *s;
    int done_calls, done_status;
    char why[256];
    int reads, eofs, errors, drains, err;
    size_t got, sent, max_queued;
    int mismatch, paused, pause_turn, blocked;
    char first[64];
    size_t first_len;
    /* Through the host slot: what bw_tls_info_t said. */
    int info_seen, verified;
    char alpn[32], sni[64], subject[256];
} end_t;

typedef struct pair {
    wire_pair_t m;
    end_t c, s;
    SSL_CTX *cctx, *sctx;
    const char *const *calpn, *const *salpn;
    const bw_tls_opts_t *host_srv; /* set: the server starts TLS via the host slot */
    int reset_srv;                 /* set: the server resets each stream instead of TLS */
    int turn;
} pair_t;

static pair_t *g_pair;

static uint8_t pattern_at(size_t i)
{
    return (uint8_t)(i * 131u + (i >> 9));
}

static void end_read(bw_stream_t *s, void *ud, const void *data, size_t len)
{
    end_t *e = ud;
    const uint8_t *p = data;
    e->reads++;
    if (e->first_len < sizeof e->first - 1) {
        size_t n =
            len < sizeof e->first - 1 - e->first_len ? len : sizeof e->first - 1 - e->first_len;
        memcpy(e->first + e->first_len, p, n);
        e->first_len += n;
    }
    for (size_t i = 0; i < len; i++)
        if (p[i] != pattern_at(e->got + i))
            e->mismatch++;
    /* A slow reader: stop for a while after every PAUSE_EVERY bytes. */
    if ((e->got + len) / PAUSE_EVERY != e->got / PAUSE_EVERY) {
        bw_stream_read_stop(s);
        e->paused = 1;
        e->pause_turn = g_pair->turn;
    }
    e->got += len;
}

static void end_eof(bw_stream_t *s, void *ud)
{
    ((end_t *)ud)->eofs++;
}

static void end_error(bw_stream_t *s, void *ud, int err)
{
    end_t *e = ud;
    e->errors++;
    e->err = err;
}

static void fill(end_t *e);

static void end_drain(bw_stream_t *s, void *ud)
{
    end_t *e = ud;
    e->drains++;
    e->blocked = 0;
    fill(e);
}

static const bw_stream_cbs_t end_cbs = {
    .struct_size = sizeof(bw_stream_cbs_t),
    .on_read = end_read,
    .on_eof = end_eof,
    .on_drain = end_drain,
    .on_error = end_error,
};

static void end_done(void *ud, bw_stream_t *s, int status, const char *why)
{
    end_t *e = ud;
    e->done_calls++;
    e->done_status = status;
    if (why)
        snprintf(e->why, sizeof e->why, "%s", why);
    e->s = s;
    if (s)
        bw_stream_set_callbacks(s, &end_cbs, e);
}

static void host_done(void *ud, bw_stream_t *s, int status, const bw_tls_info_t *info)
{
    end_t *e = ud;
    if (info) {
        e->info_seen++;
        e->verified = info->peer_verified;
        snprintf(e->alpn, sizeof e->alpn, "%s", info->alpn);
        snprintf(e->sni, sizeof e->sni, "%s", info->server_name);
        snprintf(e->subject, sizeof e->subject, "%s", info->peer_subject);
    }
    end_done(ud, s, status, NULL);
}

/* Write the pattern until BULK bytes are out or the stream pushes back. */
static void fill(end_t *e)
{
    static uint8_t chunk[32768];
    while (!e->blocked && e->sent < BULK && e->s) {
        size_t n = BULK - e->sent < sizeof chunk ? BULK - e->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern_at(e->sent + i);
        int rc = bw_stream_write(e->s, chunk, n);
        assert_true(rc == 0 || rc == BW_EAGAIN);
        e->sent += n;
        if (rc == BW_EAGAIN)
            e->blocked = 1;
        size_t q = bw_stream_queued(e->s);
        if (q > e->max_queued)
            e->max_queued = q;
    }
}

/* The server side: start the filter the moment the peer opens a stream. */
static void on_stream(void *ud, bw_mux_stream_t *ms)
{
    pair_t *p = g_pair;
    if (p->reset_srv) {
        bw_mux_stream_reset(ms);
        return;
    }
    bw_stream_t *below = bw_stream_mux_new(io, ms, "10.0.0.1:1");
    assert_non_null(below);
    if (p->host_srv) {
        bw_error_t err = {{0}};
        assert_int_equal(
            bw_host_table()->stream_start_tls(below, p->host_srv, host_done, &p->s, &err), 0);
        return;
    }
    bw_tls_filter_opts_t o = {.ctx = p->sctx, .is_server = 1, .alpn = p->salpn};
    assert_int_equal(bw_stream_tls_over(io, below, &o, end_done, &p->s), 0);
}

static void pair_open(pair_t *p, SSL_CTX *cctx, SSL_CTX *sctx)
{
    wire_pair_open(&p->m, on_stream);
    p->cctx = cctx;
    p->sctx = sctx;
    p->c.name = "client";
    p->s.name = "server";
    g_pair = p;
}

/* Move what each engine sent to the other. */
static void pair_pump(pair_t *p)
{
    pump(&p->m.to_srv, &p->m.to_cli);
}

static void resume_if_due(pair_t *p, end_t *e)
{
    if (e->paused && e->s && p->turn - e->pause_turn >= PAUSE_TURNS) {
        e->paused = 0;
        bw_stream_read_start(e->s);
    }
}

/* Turn the loop and the wires until done(p) or MAX_TURNS turns. */
static int spin(pair_t *p, int (*done)(pair_t *p))
{
    for (int i = 0; i < MAX_TURNS; i++) {
        if (done(p))
            return 1;
        p->turn++;
        pair_pump(p);
        uv_run(&loop, UV_RUN_NOWAIT);
        pair_pump(p);
        resume_if_due(p, &p->c);
        resume_if_due(p, &p->s);
    }
    return done(p);
}

/* Open a yamux stream and start the client filter over it. */
static void client_start(pair_t *p, const char *server_name)
{
    bw_mux_stream_t *ms = bw_mux_stream_open(p->m.cli);
    assert_non_null(ms);
    bw_stream_t *below = bw_stream_mux_new(io, ms, "10.0.0.2:2");
    assert_non_null(below);
    bw_tls_filter_opts_t o = {.ctx = p->cctx, .server_name = server_name, .alpn = p->calpn};
    assert_int_equal(bw_stream_tls_over(io, below, &o, end_done, &p->c), 0);
    /* Never called back from inside the call. */
    assert_int_equal(p->c.done_calls, 0);
}

static int both_done(pair_t *p)
{
    return p->c.done_calls && p->s.done_calls;
}

/* Close what is open, let every engine and stream go, free the engines. */
static void pair_close(pair_t *p)
{
    bw_stream_close(p->c.s, 0);
    bw_stream_close(p->s.s, 0);
    p->c.s = p->s.s = NULL;
    for (int i = 0; i < 50; i++) {
        pair_pump(p);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    wire_pair_free(&p->m);
    SSL_CTX_free(p->cctx);
    SSL_CTX_free(p->sctx);
    g_pair = NULL;
}

/* ---- contexts ---- */

static void path_in(char *out, const char *dir, const char *file)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, file);
    assert_true(n > 0 && n < PATH_MAX);
}

static SSL_CTX *server_ctx(void)
{
    char cert[PATH_MAX], key[PATH_MAX], err[256] = "";
    path_in(cert, g_dir, "server.pem");
    path_in(key, g_dir, "server.key");
    SSL_CTX *ctx = bw_tls_server_ctx(cert, key, err, sizeof err);
    if (!ctx)
        fail_msg("server ctx: %s", err);
    return ctx;
}

static SSL_CTX *client_ctx(const char *ca_dir)
{
    char ca[PATH_MAX], err[256] = "";
    path_in(ca, ca_dir, "ca.pem");
    SSL_CTX *ctx = bw_tls_client_ctx(ca, err, sizeof err);
    if (!ctx)
        fail_msg("client ctx: %s", err);
    return ctx;
}

/* ---- tests ---- */

static int exchanged(pair_t *p)
{
    return p->c.got == 4 && p->s.got == 4;
}

static void handshake_alpn_sni(void **state)
{
    static const char *const calpn[] = {"h2", "http/1.1", NULL};
    static const char *const salpn[] = {"http/1.1", "h2", NULL};
    pair_t p = {.calpn = calpn, .salpn = salpn};
    pair_open(&p, client_ctx(g_dir), server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, both_done));
    assert_int_equal(p.c.done_status, 0);
    assert_int_equal(p.s.done_status, 0);

    const unsigned char *a;
    unsigned alen;
    /* The server's preference wins among what the client offered. */
    SSL_get0_alpn_selected(bw_stream_tls_ssl(p.c.s), &a, &alen);
    assert_int_equal(alen, 8);
    assert_memory_equal(a, "http/1.1", 8);
    SSL_get0_alpn_selected(bw_stream_tls_ssl(p.s.s), &a, &alen);
    assert_int_equal(alen, 8);
    assert_memory_equal(a, "http/1.1", 8);
    const char *sni = SSL_get_servername(bw_stream_tls_ssl(p.s.s), TLSEXT_NAMETYPE_host_name);
    assert_non_null(sni);
    assert_string_equal(sni, "localhost");
    assert_string_equal(bw_stream_peer(p.s.s), "10.0.0.1:1");
    assert_null(bw_stream_tls_ssl(NULL));
    /* The server asked for no client certificate. */
    assert_int_equal(SSL_get0_peer_certificate(bw_stream_tls_ssl(p.s.s)) == NULL, 1);

    assert_int_equal(bw_stream_write(p.c.s, "ping", 4), 0);
    assert_int_equal(bw_stream_write(p.s.s, "pong", 4), 0);
    assert_true(spin(&p, exchanged));
    assert_string_equal(p.s.first, "ping");
    assert_string_equal(p.c.first, "pong");
    assert_int_equal(p.c.done_calls, 1);
    assert_int_equal(p.s.done_calls, 1);
    assert_int_equal(p.c.errors + p.s.errors + p.c.eofs + p.s.eofs, 0);
    pair_close(&p);
}

static int bulk_done(pair_t *p)
{
    size_t in_flight_c = p->c.sent - p->s.got, in_flight_s = p->s.sent - p->c.got;
    assert_true(in_flight_c <= IN_FLIGHT_MAX);
    assert_true(in_flight_s <= IN_FLIGHT_MAX);
    return p->c.got == BULK && p->s.got == BULK && p->c.eofs && p->s.eofs;
}

static int written(pair_t *p)
{
    return p->c.sent == BULK && p->s.sent == BULK;
}

static void bulk_both_ways_with_paused_readers(void **state)
{
    pair_t p = {0};
    pair_open(&p, client_ctx(g_dir), server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, both_done));
    assert_int_equal(p.c.done_status, 0);
    assert_int_equal(p.s.done_status, 0);
    fill(&p.c);
    fill(&p.s);
    assert_true(spin(&p, written));
    assert_int_equal(bw_stream_shutdown(p.c.s), 0);
    assert_int_equal(bw_stream_shutdown(p.s.s), 0);
    assert_true(spin(&p, bulk_done));
    assert_int_equal(p.c.mismatch, 0);
    assert_int_equal(p.s.mismatch, 0);
    /* The writers were held back and resumed by on_drain... */
    assert_true(p.c.drains > 0);
    assert_true(p.s.drains > 0);
    /* ...with the queue bounded near the high-water mark. */
    assert_true(p.c.max_queued <= BW_STREAM_HWM + 2 * 32768);
    assert_true(p.s.max_queued <= BW_STREAM_HWM + 2 * 32768);
    assert_int_equal(p.c.eofs, 1);
    assert_int_equal(p.s.eofs, 1);
    assert_int_equal(p.c.errors + p.s.errors, 0);
    pair_close(&p);
}

static int server_got_eof(pair_t *p)
{
    return p->s.eofs > 0;
}

static int client_got_eof(pair_t *p)
{
    return p->c.eofs > 0;
}

static void half_close_each_way(void **state)
{
    pair_t p = {0};
    pair_open(&p, client_ctx(g_dir), server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, both_done));
    assert_int_equal(bw_stream_write(p.c.s, "abc", 3), 0);
    assert_int_equal(bw_stream_shutdown(p.c.s), 0);
    assert_true(spin(&p, server_got_eof));
    assert_int_equal(p.s.first_len, 3);
    /* The other direction still works after the client's close_notify. */
    assert_int_equal(bw_stream_write(p.s.s, "reply", 5), 0);
    assert_int_equal(bw_stream_shutdown(p.s.s), 0);
    assert_true(spin(&p, client_got_eof));
    assert_string_equal(p.c.first, "reply");
    assert_int_equal(p.c.eofs, 1);
    assert_int_equal(p.s.eofs, 1);
    assert_int_equal(p.c.errors + p.s.errors, 0);
    /* Writing after our own half-close fails. */
    assert_int_not_equal(bw_stream_write(p.c.s, "x", 1), 0);
    pair_close(&p);
}

static int server_failed(pair_t *p)
{
    return p->s.errors > 0;
}

static void abort_resets_the_peer(void **state)
{
    pair_t p = {0};
    pair_open(&p, client_ctx(g_dir), server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, both_done));
    assert_int_equal(bw_stream_write(p.c.s, "doomed", 6), 0);
    bw_stream_close(p.c.s, 1);
    p.c.s = NULL;
    assert_true(spin(&p, server_failed));
    for (int i = 0; i < 20; i++)
        spin(&p, server_failed);
    assert_int_equal(p.s.errors, 1);
    assert_int_equal(p.s.eofs, 0);
    assert_int_equal(bw_stream_write(p.s.s, "x", 1), BW_EPIPE);
    /* The aborting side hears nothing more. */
    assert_int_equal(p.c.errors + p.c.eofs, 0);
    pair_close(&p);
}

static void wrong_ca_fails_once(void **state)
{
    pair_t p = {0};
    pair_open(&p, client_ctx(g_other), server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, both_done));
    for (int i = 0; i < 20; i++)
        spin(&p, both_done);
    assert_int_equal(p.c.done_calls, 1);
    assert_int_equal(p.c.done_status, BW_EACCES);
    assert_null(p.c.s);
    assert_non_null(strstr(p.c.why, "certificate verify failed"));
    /* The server hears the client's alert: its handshake fails too. */
    assert_int_equal(p.s.done_calls, 1);
    assert_true(p.s.done_status < 0);
    assert_null(p.s.s);
    pair_close(&p);
}

static int client_done(pair_t *p)
{
    return p->c.done_calls > 0;
}

/* The stream below goes before the handshake ends: one failed completion. */
static void transport_reset_during_handshake(void **state)
{
    pair_t p = {.reset_srv = 1};
    pair_open(&p, client_ctx(g_dir), NULL);
    client_start(&p, "localhost");
    assert_true(spin(&p, client_done));
    for (int i = 0; i < 20; i++)
        spin(&p, client_done);
    assert_int_equal(p.c.done_calls, 1);
    assert_true(p.c.done_status < 0);
    assert_null(p.c.s);
    assert_non_null(strstr(p.c.why, "transport failed"));
    assert_int_equal(p.s.done_calls, 0);
    pair_close(&p);
}

/* ---- mutual TLS ---- */

/* A client certificate of g_dir's CA, made here: the dev profile is for
 * servers (its extended key usage says so). */
static void make_client_cert(const char *certf, const char *keyf)
{
    char err[256];
    X509 *ca = NULL, *x = X509_new();
    EVP_PKEY *ca_key = NULL, *key = EVP_EC_gen("P-256");
    assert_int_equal(bw_tls_dev_ca(g_dir, &ca, &ca_key, err, sizeof err), 0);
    assert_non_null(x);
    assert_non_null(key);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test client", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "clientAuth");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    FILE *f = fopen(certf, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(keyf, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}

static SSL_CTX *mtls_server_ctx(void)
{
    char ca[PATH_MAX], err[256] = "";
    SSL_CTX *ctx = server_ctx();
    path_in(ca, g_dir, "ca.pem");
    if (bw_tls_ctx_verify_clients(ctx, ca, 1, err, sizeof err) < 0)
        fail_msg("verify clients: %s", err);
    return ctx;
}

static void mutual_tls_accepted(void **state)
{
    char cert[PATH_MAX], key[PATH_MAX], err[256] = "";
    path_in(cert, g_dir, "client.pem");
    path_in(key, g_dir, "client.key");
    make_client_cert(cert, key);
    SSL_CTX *cctx = client_ctx(g_dir);
    assert_int_equal(bw_tls_ctx_use_cert(cctx, cert, key, err, sizeof err), 0);
    pair_t p = {0};
    pair_open(&p, cctx, mtls_server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, both_done));
    assert_int_equal(p.c.done_status, 0);
    assert_int_equal(p.s.done_status, 0);
    SSL *ssl = bw_stream_tls_ssl(p.s.s);
    assert_non_null(SSL_get0_peer_certificate(ssl));
    assert_int_equal(SSL_get_verify_result(ssl), X509_V_OK);
    assert_int_equal(bw_stream_write(p.c.s, "ping", 4), 0);
    assert_int_equal(bw_stream_write(p.s.s, "pong", 4), 0);
    assert_true(spin(&p, exchanged));
    assert_int_equal(p.c.errors + p.s.errors, 0);
    pair_close(&p);
}

static int client_failed(pair_t *p)
{
    return p->s.done_calls && (p->c.done_status < 0 || p->c.errors > 0 || p->c.eofs > 0);
}

static void mutual_tls_refused_without_cert(void **state)
{
    pair_t p = {0};
    pair_open(&p, client_ctx(g_dir), mtls_server_ctx());
    client_start(&p, "localhost");
    assert_true(spin(&p, client_failed));
    for (int i = 0; i < 20; i++)
        spin(&p, both_done);
    assert_int_equal(p.s.done_calls, 1);
    assert_true(p.s.done_status < 0);
    assert_null(p.s.s);
    /* TLS 1.3 clients finish before the server judged their certificate:
     * the refusal then arrives as one on_error. Either way, exactly once. */
    assert_int_equal(p.c.done_calls, 1);
    assert_int_equal((p.c.done_status < 0) + p.c.errors, 1);
    pair_close(&p);
}

/* ---- the host slot (ABI 1.2) ---- */

static bw_stream_t *mux_client_stream(pair_t *p)
{
    bw_mux_stream_t *ms = bw_mux_stream_open(p->m.cli);
    assert_non_null(ms);
    bw_stream_t *below = bw_stream_mux_new(io, ms, "10.0.0.2:2");
    assert_non_null(below);
    return below;
}

static void host_slot_mutual_tls(void **state)
{
    static const char *const alpn[] = {"x-burrow", NULL};
    char cert[PATH_MAX], key[PATH_MAX], ccert[PATH_MAX], ckey[PATH_MAX], ca[PATH_MAX];
    const bw_host_t *h = bw_host_table();
    assert_true(BW_HOST_HAS(h, stream_start_tls));
    path_in(cert, g_dir, "server.pem");
    path_in(key, g_dir, "server.key");
    path_in(ca, g_dir, "ca.pem");
    path_in(ccert, g_dir, "client.pem");
    path_in(ckey, g_dir, "client.key");
    make_client_cert(ccert, ckey);
    bw_tls_opts_t so = {
        .struct_size = sizeof so,
        .flags = BW_TLS_F_SERVER | BW_TLS_F_REQUIRE_CLIENT_CERT,
        .alpn = alpn,
        .cert_file = cert,
        .key_file = key,
        .ca_file = ca,
    };
    bw_tls_opts_t co = {
        .struct_size = sizeof co,
        .flags = BW_TLS_F_VERIFY,
        .server_name = "localhost",
        .alpn = alpn,
        .cert_file = ccert,
        .key_file = ckey,
        .ca_file = ca,
    };
    pair_t p = {.host_srv = &so};
    pair_open(&p, NULL, NULL);
    bw_host_set_io(io);
    bw_error_t err = {{0}};
    assert_int_equal(h->stream_start_tls(mux_client_stream(&p), &co, host_done, &p.c, &err), 0);
    assert_int_equal(p.c.done_calls, 0);
    assert_true(spin(&p, both_done));
    assert_int_equal(p.c.done_calls, 1);
    assert_int_equal(p.s.done_calls, 1);
    assert_int_equal(p.c.done_status, 0);
    assert_int_equal(p.s.done_status, 0);
    assert_int_equal(p.c.info_seen + p.s.info_seen, 2);
    assert_string_equal(p.c.alpn, "x-burrow");
    assert_string_equal(p.s.alpn, "x-burrow");
    assert_string_equal(p.s.sni, "localhost");
    assert_int_equal(p.c.verified, 1);
    assert_int_equal(p.s.verified, 1);
    assert_non_null(strstr(p.s.subject, "test client"));
    assert_int_equal(bw_stream_write(p.c.s, "ping", 4), 0);
    assert_int_equal(bw_stream_write(p.s.s, "pong", 4), 0);
    assert_true(spin(&p, exchanged));
    assert_int_equal(p.c.errors + p.s.errors, 0);
    pair_close(&p);
    bw_host_set_io(NULL);
}

static void host_slot_refusals(void **state)
{
    char ca[PATH_MAX];
    const bw_host_t *h = bw_host_table();
    path_in(ca, g_other, "ca.pem");
    pair_t p = {0};
    pair_open(&p, NULL, server_ctx());
    bw_host_set_io(io);
    bw_error_t err = {{0}};

    /* Bad options: nothing taken, nothing called. */
    bw_stream_t *below = mux_client_stream(&p);
    bw_tls_opts_t bad = {.struct_size = sizeof bad, .flags = BW_TLS_F_SERVER};
    assert_int_equal(h->stream_start_tls(below, &bad, host_done, &p.c, &err), BW_EINVAL);
    assert_non_null(strstr(err.msg, "cert_file"));
    bw_tls_opts_t noname = {.struct_size = sizeof noname};
    assert_int_equal(h->stream_start_tls(below, &noname, host_done, &p.c, &err), BW_EINVAL);
    bw_tls_opts_t missing = {
        .struct_size = sizeof missing, .server_name = "localhost", .cert_file = "/nonexistent"};
    assert_int_equal(h->stream_start_tls(below, &missing, host_done, &p.c, &err), BW_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent"));
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(p.c.done_calls, 0);

    /* A server the client's CA did not sign: one failed completion. */
    bw_tls_opts_t co = {.struct_size = sizeof co,
                        .flags = BW_TLS_F_VERIFY,
                        .server_name = "localhost",
                        .ca_file = ca};
    assert_int_equal(h->stream_start_tls(below, &co, host_done, &p.c, &err), 0);
    assert_true(spin(&p, both_done));
    for (int i = 0; i < 20; i++)
        spin(&p, both_done);
    assert_int_equal(p.c.done_calls, 1);
    assert_int_equal(p.c.done_status, BW_EACCES);
    assert_int_equal(p.c.info_seen, 0);
    assert_null(p.c.s);
    pair_close(&p);
    bw_host_set_io(NULL);
}

static void wrong_arguments_call_nothing(void **state)
{
    pair_t p = {0};
    pair_open(&p, client_ctx(g_dir), server_ctx());
    bw_mux_stream_t *ms = bw_mux_stream_open(p.m.cli);
    bw_stream_t *below = bw_stream_mux_new(io, ms, "10.0.0.2:2");
    bw_tls_filter_opts_t o = {.ctx = p.cctx}; /* a client without a name */
    assert_int_equal(bw_stream_tls_over(io, below, &o, end_done, &p.c), BW_EINVAL);
    static const char *const bad[] = {"", NULL};
    o.server_name = "localhost";
    o.alpn = bad;
    assert_int_equal(bw_stream_tls_over(io, below, &o, end_done, &p.c), BW_EINVAL);
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(p.c.done_calls, 0);
    /* `below` is still ours. */
    bw_stream_close(below, 1);
    pair_close(&p);
}

static int setup(void **state)
{
    if (uv_loop_init(&loop) != 0)
        return -1;
    io = bw_io_new(&loop);
    return io ? 0 : -1;
}

static int teardown(void **state)
{
    bw_io_free(io);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(handshake_alpn_sni, setup, teardown),
        cmocka_unit_test_setup_teardown(bulk_both_ways_with_paused_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(half_close_each_way, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_resets_the_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_ca_fails_once, setup, teardown),
        cmocka_unit_test_setup_teardown(transport_reset_during_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(mutual_tls_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(mutual_tls_refused_without_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_arguments_call_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(host_slot_mutual_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(host_slot_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, dev_certs_group_setup, dev_certs_group_teardown);
}
