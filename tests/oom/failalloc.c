/* An allocation-failure interposer for the unit suites, loaded with
 * LD_PRELOAD by tests/oom/torture.py (curl's torture tests, done from the
 * outside). It forwards malloc, calloc, realloc, free and the aligned
 * allocators to the next definition (glibc), counting every allocating call;
 * glibc's strdup, asprintf, getline, ... and OpenSSL's, libuv's, jansson's
 * and libyaml's allocators all end in these.
 *
 * Environment (read once, at load time, then removed so that programs the
 * test starts do not inherit it):
 *   BW_FAILALLOC_COUNT=PATH  at exit, write the number of allocating calls
 *                            made to PATH
 *   BW_FAILALLOC_FAIL=N      make the Nth allocating call (1-based) return
 *                            NULL with errno ENOMEM
 *   BW_FAILALLOC_AFTER=1     fail every call from the Nth on, not just the Nth
 *   BW_FAILALLOC_TRACE=PATH  write the backtrace of the first failed call to
 *                            PATH (the frames that did not get their memory)
 *   BW_FAILALLOC_IGNORE=libcrypto,libssl
 *                            neither count nor fail the calls made from the
 *                            code of the loaded libraries whose file names
 *                            contain one of these words (see torture.py)
 *   BW_OOM_TEST=PATTERN      run only the cmocka test cases matching PATTERN
 *                            (cmocka_set_test_filter), when the program has
 *                            cmocka
 *
 * Counting starts when this library is initialised, before main(): the few
 * calls the C library makes before that are not seen, and what follows
 * (stdio buffers, cmocka's own bookkeeping) is deterministic for a given
 * program and filter, so N names the same call on every run.
 *
 * Only the process that loaded the library counts: a forked child stops
 * counting and failing (it would otherwise fail "its" Nth call too), and a
 * program the test executes does not get the library at all. realloc(p, 0)
 * and free() are passed on and not counted: failing them cannot be reported
 * to the caller. The counter is atomic, so threads (libuv's pool, OpenSSL)
 * share one sequence; which thread gets the Nth call may then vary.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_fn)(size_t, size_t);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static free_fn real_free;
static posix_memalign_fn real_posix_memalign;
static aligned_fn real_aligned_alloc;
static aligned_fn real_memalign;

/* dlsym() may allocate (its error buffer) before the real functions are
 * known: such calls are served from here and never freed. */
static _Alignas(16) unsigned char bootstrap[4096];
static size_t bootstrap_used;
static int resolving;

static unsigned long calls;   /* allocating calls so far (atomic) */
static unsigned long fail_at; /* 0: never fail */
static int fail_after;        /* fail every call from fail_at on */
static int failed_once;       /* the trace is written once (atomic) */
static pid_t owner;           /* the process that counts */
static char count_path[512];
static char ignore_list[512];

/* Code ranges of the libraries named in BW_FAILALLOC_IGNORE. */
#define MAX_IGNORED 8
static struct {
    uintptr_t lo, hi;
} ignored[MAX_IGNORED];
static int n_ignored;
static char trace_path[512];

static int in_bootstrap(const void *p)
{
    return (const unsigned char *)p >= bootstrap &&
           (const unsigned char *)p < bootstrap + sizeof bootstrap;
}

static void *bootstrap_alloc(size_t n)
{
    size_t at = (bootstrap_used + 15) & ~(size_t)15;
    if (n > sizeof bootstrap - at)
        return NULL;
    bootstrap_used = at + n;
    return bootstrap + at;
}

static void resolve(void)
{
    if (real_free != NULL || resolving)
        return;
    resolving = 1;
    real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
    real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
    real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (aligned_fn)dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (aligned_fn)dlsym(RTLD_NEXT, "memalign");
    real_free = (free_fn)dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

static void write_trace(void)
{
    void *frames[64];
    int n, fd;

    if (trace_path[0] == '\0' || __atomic_exchange_n(&failed_once, 1, __ATOMIC_SEQ_CST))
        return;
    n = backtrace(frames, 64); /* warmed up in init(): does not allocate */
    fd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    backtrace_symbols_fd(frames, n, fd);
    close(fd);
}

static int find_ignored(struct dl_phdr_info *info, size_t size, void *data)
{
    char list[sizeof ignore_list];
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    int match = 0;

    memcpy(list, ignore_list, sizeof list);
    for (char *save, *name = strtok_r(list, ",", &save); name != NULL;
         name = strtok_r(NULL, ",", &save))
        match |= strstr(info->dlpi_name, name) != NULL;
    if (!match || n_ignored == MAX_IGNORED)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        if (info->dlpi_addr + ph->p_vaddr < lo)
            lo = info->dlpi_addr + ph->p_vaddr;
        if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
            hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    }
    ignored[n_ignored].lo = lo;
    ignored[n_ignored].hi = hi;
    n_ignored++;
    return 0;
}

/* Counts one allocating call made from `caller`; returns 1 when it must
 * fail. Calls from an ignored library are neither counted nor failed. */
static int should_fail(const void *caller)
{
    unsigned long n;

    if (owner == 0 || getpid() != owner)
        return 0;
    for (int i = 0; i < n_ignored; i++)
        if ((uintptr_t)caller >= ignored[i].lo && (uintptr_t)caller < ignored[i].hi)
            return 0;
    n = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
    if (fail_at == 0 || n < fail_at || (n > fail_at && !fail_after))
        return 0;
    write_trace();
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t n)
{
    resolve();
    if (real_malloc == NULL)
        return bootstrap_alloc(n);
    return should_fail(__builtin_return_address(0)) ? NULL : real_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    resolve();
    if (real_calloc == NULL) {
        if (size != 0 && n > SIZE_MAX / size)
            return NULL;
        return bootstrap_alloc(n * size); /* static: already zero */
    }
    return should_fail(__builtin_return_address(0)) ? NULL : real_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    resolve();
    if (in_bootstrap(p)) {
        /* Rare: grow a bootstrap block into real memory. */
        void *q = malloc(n);
        size_t avail = (size_t)(bootstrap + sizeof bootstrap - (unsigned char *)p);
        if (q != NULL)
            memcpy(q, p, n < avail ? n : avail);
        return q;
    }
    if (real_realloc == NULL)
        return NULL;
    if (n == 0 || !should_fail(__builtin_return_address(0)))
        return real_realloc(p, n);
    return NULL;
}

void free(void *p)
{
    if (p == NULL || in_bootstrap(p))
        return;
    resolve();
    if (real_free != NULL)
        real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    resolve();
    if (real_posix_memalign == NULL)
        return ENOMEM;
    return should_fail(__builtin_return_address(0)) ? ENOMEM : real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    resolve();
    if (real_aligned_alloc == NULL)
        return NULL;
    return should_fail(__builtin_return_address(0)) ? NULL : real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n)
{
    resolve();
    if (real_memalign == NULL)
        return NULL;
    return should_fail(__builtin_return_address(0)) ? NULL : real_memalign(align, n);
}

static void copy_env(char *dst, size_t size, const char *name)
{
    const char *v = getenv(name);
    if (v != NULL && strlen(v) < size)
        memcpy(dst, v, strlen(v) + 1);
}

/* BW_OOM_TEST selects cmocka test cases without touching the tests' main():
 * cmocka only keeps the pattern for cmocka_run_group_tests(). */
static void apply_test_filter(void)
{
    static char pattern[256];
    void (*set_filter)(const char *);

    copy_env(pattern, sizeof pattern, "BW_OOM_TEST");
    if (pattern[0] == '\0')
        return;
    *(void **)&set_filter = dlsym(RTLD_DEFAULT, "cmocka_set_test_filter");
    if (set_filter != NULL)
        set_filter(pattern);
}

__attribute__((constructor)) static void init(void)
{
    const char *v;
    void *warm[2];

    resolve();
    backtrace(warm, 2); /* loads libgcc_s now, not inside a failing call */
    v = getenv("BW_FAILALLOC_FAIL");
    fail_at = v != NULL ? strtoul(v, NULL, 10) : 0;
    v = getenv("BW_FAILALLOC_AFTER");
    fail_after = v != NULL && strcmp(v, "1") == 0;
    copy_env(count_path, sizeof count_path, "BW_FAILALLOC_COUNT");
    copy_env(trace_path, sizeof trace_path, "BW_FAILALLOC_TRACE");
    copy_env(ignore_list, sizeof ignore_list, "BW_FAILALLOC_IGNORE");
    if (ignore_list[0] != '\0')
        dl_iterate_phdr(find_ignored, NULL);
    apply_test_filter();
    unsetenv("LD_PRELOAD");
    unsetenv("BW_FAILALLOC_FAIL");
    unsetenv("BW_FAILALLOC_AFTER");
    unsetenv("BW_FAILALLOC_COUNT");
    unsetenv("BW_FAILALLOC_TRACE");
    unsetenv("BW_FAILALLOC_IGNORE");
    unsetenv("BW_OOM_TEST");
    owner = getpid();
}

__attribute__((destructor)) static void fini(void)
{
    char buf[32];
    int fd, len;

    if (count_path[0] == '\0' || getpid() != owner)
        return;
    len = snprintf(buf, sizeof buf, "%lu\n", __atomic_load_n(&calls, __ATOMIC_SEQ_CST));
    fd = open(count_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, buf, (size_t)len) != len) {
        /* nothing to do: the runner reports a missing count */
    }
    close(fd);
}
