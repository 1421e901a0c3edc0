/* The containers and tables of core/base: the growable buffer, the
 * intrusive list, the chunk queue, HTTP text, base64. Built with -Wl,--wrap=realloc so a test can
 * make the buffer's allocation fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <burrow/error.h>

#include "base64.h"
#include "chunkq.h"
#include "http_text.h"
#include "list.h"
#include "util.h"

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

static int fail_realloc; /* the next realloc returns NULL */

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_realloc) {
        fail_realloc = 0;
        return NULL;
    }
    return __real_realloc(p, n);
}

static void buf_appends_and_terminates(void **state)
{
    bw_buf_t b = {0};
    assert_string_equal(bw_buf_cstr(&b), "");
    assert_int_equal(bw_buf_put(&b, "ab", 2), 0);
    assert_string_equal(b.p, "ab"); /* NUL-terminated after a put too */
    assert_int_equal(bw_buf_puts(&b, "cd"), 0);
    assert_int_equal(bw_buf_printf(&b, "-%d-", 42), 0);
    assert_int_equal(bw_buf_put(&b, "", 0), 0);
    assert_string_equal(bw_buf_cstr(&b), "abcd-42-");
    assert_int_equal(b.len, 8);
    for (int i = 0; i < 1000; i++) /* grows past its first allocation */
        assert_int_equal(bw_buf_put(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10008);
    assert_int_equal(strlen(b.p), 10008);

    size_t len;
    char *p = bw_buf_take(&b, &len);
    assert_int_equal(len, 10008);
    assert_memory_equal(p, "abcd-42-0123", 12);
    free(p);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_null(bw_buf_take(&b, NULL));
    bw_buf_free(&b);
    bw_buf_free(NULL);
}

static void buf_too_big_is_sticky(void **state)
{
    bw_buf_t b = {.max = 5};
    assert_int_equal(bw_buf_put(&b, "abc", 3), 0);
    assert_int_equal(bw_buf_put(&b, "de", 2), 0); /* exactly max */
    assert_int_equal(bw_buf_put(&b, "f", 1), BW_EMSGSIZE);
    assert_int_equal(b.err, BW_EMSGSIZE);
    assert_string_equal(b.p, "abcde");                    /* unchanged */
    assert_int_equal(bw_buf_put(&b, "", 0), BW_EMSGSIZE); /* sticky */
    assert_int_equal(bw_buf_printf(&b, "%s", ""), BW_EMSGSIZE);
    bw_buf_free(&b);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.max, 5); /* the bound stays */
    assert_int_equal(bw_buf_puts(&b, "12345"), 0);
    assert_int_equal(bw_buf_printf(&b, "%d", 6), BW_EMSGSIZE);
    bw_buf_free(&b);
}

static void buf_out_of_memory_is_sticky(void **state)
{
    bw_buf_t b = {0};
    assert_int_equal(bw_buf_puts(&b, "kept"), 0);
    char big[4096];
    memset(big, 'x', sizeof big);
    fail_realloc = 1;
    assert_int_equal(bw_buf_put(&b, big, sizeof big), BW_ENOMEM);
    assert_int_equal(b.err, BW_ENOMEM);
    assert_string_equal(b.p, "kept"); /* the old contents survive */
    assert_int_equal(b.len, 4);
    /* Later appends fail too, even ones that would fit: the bytes are gone. */
    assert_int_equal(bw_buf_put(&b, "y", 1), BW_ENOMEM);
    assert_int_equal(bw_buf_printf(&b, "%d", 1), BW_ENOMEM);
    assert_string_equal(b.p, "kept");
    bw_buf_free(&b);

    /* A size no allocation can satisfy fails before calling realloc. */
    assert_int_equal(bw_buf_puts(&b, "x"), 0);
    assert_int_equal(bw_buf_put(&b, big, SIZE_MAX - 8), BW_ENOMEM);
    assert_int_equal(bw_buf_put(&b, big, SIZE_MAX / 2), BW_ENOMEM);
    bw_buf_free(&b);
    assert_int_equal(bw_buf_put(&b, big, SIZE_MAX), BW_ENOMEM);
    assert_null(b.p);
    bw_buf_free(&b);
}

typedef struct item {
    int v;
    bw_list_node_t node;
} item_t;

static int list_values(const bw_list_t *l, int *out)
{
    int n = 0;
    BW_LIST_FOREACH (it, l, item_t, node) {
        out[n++] = it->v;
    }
    return n;
}

static void list_push_remove_move(void **state)
{
    bw_list_t l = {0}, other = {0};
    item_t a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    int v[4];
    assert_true(bw_list_empty(&l));
    assert_null(BW_LIST_FIRST(&l, item_t, node));
    assert_false(bw_list_linked(&a.node));
    bw_list_remove(&a.node); /* unlinked: nothing happens */
    bw_list_push(&l, &a.node);
    bw_list_push(&l, &b.node);
    bw_list_push(&l, &c.node);
    assert_int_equal(list_values(&l, v), 3); /* newest first */
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 1);

    bw_list_remove(&b.node); /* the middle */
    assert_false(bw_list_linked(&b.node));
    assert_null(b.node.next);
    assert_int_equal(list_values(&l, v), 2);
    assert_int_equal(v[0] * 10 + v[1], 31);
    bw_list_remove(&c.node); /* the front */
    assert_ptr_equal(BW_LIST_FIRST(&l, item_t, node), &a);
    bw_list_push(&l, &b.node);
    bw_list_remove(&a.node); /* the back */
    assert_int_equal(list_values(&l, v), 1);
    assert_int_equal(v[0], 2);

    /* Moved nodes unlink themselves from their new list. */
    bw_list_push(&l, &c.node);
    bw_list_move(&l, &other);
    assert_true(bw_list_empty(&l));
    assert_int_equal(list_values(&other, v), 2);
    assert_int_equal(v[0] * 10 + v[1], 32);
    bw_list_remove(&c.node);
    assert_ptr_equal(BW_LIST_FIRST(&other, item_t, node), &b);
    bw_list_remove(&b.node);
    assert_true(bw_list_empty(&other));
    bw_list_move(&l, &other); /* an empty move */
    assert_true(bw_list_empty(&other));

    /* Back pushes keep arrival order, as a FIFO. */
    bw_list_push_back(&l, &a.node);
    bw_list_push_back(&l, &b.node);
    bw_list_push(&l, &c.node);
    assert_int_equal(list_values(&l, v), 3);
    assert_int_equal(v[0] * 100 + v[1] * 10 + v[2], 312);
    bw_list_remove(&b.node); /* the back */
    bw_list_push_back(&l, &b.node);
    assert_int_equal(list_values(&l, v), 3);
    assert_int_equal(v[0] * 100 + v[1] * 10 + v[2], 312);
    while (!bw_list_empty(&l))
        bw_list_remove(bw_list_first(&l));
    assert_false(bw_list_linked(&a.node) || bw_list_linked(&b.node) || bw_list_linked(&c.node));
}

static void chunkq_fifo_fills_tail_first(void **state)
{
    bw_chunkq_t q = {0};
    assert_true(bw_chunkq_empty(&q));
    assert_int_equal(bw_chunkq_push(&q, "abc", 3, 8), 0);
    assert_int_equal(bw_chunkq_push(&q, "defgh", 5, 8), 0); /* fits the first chunk */
    assert_ptr_equal(q.head, q.tail);
    assert_int_equal(bw_chunkq_push(&q, "ij", 2, 8), 0); /* a second chunk */
    assert_ptr_not_equal(q.head, q.tail);
    assert_int_equal(q.bytes, 10);

    const void *segs[4];
    size_t lens[4], total;
    assert_int_equal(bw_chunkq_gather(&q, 9, segs, lens, 4, &total), 2);
    assert_int_equal(total, 9);
    assert_memory_equal(segs[0], "abcdefgh", 8);
    assert_memory_equal(segs[1], "i", 1);

    bw_chunkq_drop(&q, 5);
    assert_int_equal(q.bytes, 5);
    assert_int_equal(bw_chunkq_gather(&q, 100, segs, lens, 1, &total), 1);
    assert_memory_equal(segs[0], "fgh", 3);
    assert_int_equal(total, 3);
    bw_chunkq_drop(&q, 3); /* frees the first chunk */
    assert_ptr_equal(q.head, q.tail);
    bw_chunkq_clear(&q);
    assert_true(bw_chunkq_empty(&q));
    assert_int_equal(q.bytes, 0);
}

/* A caller that allocates its own chunks: fill takes what the tail has
 * room for, append links a chunk it made; the bytes read back in order. */
static void chunkq_fill_and_append(void **state)
{
    bw_chunkq_t q = {0};
    static union {
        bw_chunk_t c;
        unsigned char b[sizeof(bw_chunk_t) + 16];
    } one, two;
    assert_int_equal(bw_chunkq_fill(&q, "abc", 3), 0); /* no tail: nothing fits */
    one.c = (bw_chunk_t){.len = 3, .cap = 4};
    memcpy(one.c.data, "abc", 3);
    bw_chunkq_append(&q, &one.c);
    assert_int_equal(bw_chunkq_fill(&q, "defg", 4), 1); /* one byte of room left */
    two.c = (bw_chunk_t){.len = 3, .cap = 16};
    memcpy(two.c.data, "efg", 3);
    bw_chunkq_append(&q, &two.c);
    assert_int_equal(q.bytes, 7);
    const void *segs[2];
    size_t lens[2], total;
    assert_int_equal(bw_chunkq_gather(&q, 100, segs, lens, 2, &total), 2);
    assert_int_equal(total, 7);
    assert_memory_equal(segs[0], "abcd", 4);
    assert_memory_equal(segs[1], "efg", 3);
}

static void chunkq_push_front_and_pop(void **state)
{
    bw_chunkq_t q = {0};
    assert_int_equal(bw_chunkq_push(&q, "world", 5, 0), 0);
    assert_int_equal(bw_chunkq_push_front(&q, "hello ", 6), 0);
    bw_chunk_t *c = bw_chunkq_pop(&q);
    assert_memory_equal(c->data + c->off, "hello ", c->len);
    free(c);
    c = bw_chunkq_pop(&q);
    assert_memory_equal(c->data + c->off, "world", c->len);
    free(c);
    assert_null(bw_chunkq_pop(&q));
    assert_null(q.tail);
    assert_int_equal(q.bytes, 0);
}

static void http_reasons_and_tokens(void **state)
{
    assert_string_equal(bw_http_reason(404), "Not Found");
    assert_string_equal(bw_http_reason(421), "Misdirected Request");
    assert_null(bw_http_reason(299));
    assert_true(bw_http_is_token("X-Forwarded-For", 15));
    assert_true(bw_http_is_token("!#$%&'*+-.^_`|~", 15));
    assert_false(bw_http_is_token("", 0));
    assert_false(bw_http_is_token("Bad Name", 8));
    assert_false(bw_http_is_token("a:b", 3));
    assert_false(bw_http_is_token("a\0b", 3));
    assert_false(bw_http_is_tchar(0x80));
}

static void base64_round_trips(void **state)
{
    static const struct {
        const char *plain, *enc;
    } t[] = {{"", ""},
             {"f", "Zg=="},
             {"fo", "Zm8="},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg=="},
             {"fooba", "Zm9vYmE="},
             {"foobar", "Zm9vYmFy"},
             {"\xff\xfe", "//4="}};
    char out[32];
    unsigned char dec[32];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t n = strlen(t[i].plain);
        assert_int_equal(bw_base64_encode(t[i].plain, n, out), strlen(t[i].enc));
        assert_memory_equal(out, t[i].enc, strlen(t[i].enc));
        assert_int_equal(bw_base64_decode(t[i].enc, strlen(t[i].enc), dec), (long)n);
        assert_memory_equal(dec, t[i].plain, n);
    }
    /* In pieces, as over a chunk list. */
    bw_base64_enc_t e = {0};
    size_t o = bw_base64_encode_update(&e, "fo", 2, out);
    o += bw_base64_encode_update(&e, "oba", 3, out + o);
    o += bw_base64_encode_final(&e, out + o);
    assert_int_equal(o, 8);
    assert_memory_equal(out, "Zm9vYmE=", 8);
    /* Padding optional; bad characters and lengths refused. */
    assert_int_equal(bw_base64_decode("Zm8", 3, dec), 2);
    assert_true(bw_base64_decode("Zm9v!", 5, dec) < 0);
    assert_true(bw_base64_decode("Zm9vY", 5, dec) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_appends_and_terminates),   cmocka_unit_test(buf_too_big_is_sticky),
        cmocka_unit_test(buf_out_of_memory_is_sticky),  cmocka_unit_test(list_push_remove_move),
        cmocka_unit_test(chunkq_fifo_fills_tail_first), cmocka_unit_test(chunkq_fill_and_append),
        cmocka_unit_test(chunkq_push_front_and_pop),    cmocka_unit_test(http_reasons_and_tokens),
        cmocka_unit_test(base64_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
