/* Tunnel metrics: go-metrics' Timer (a Meter of 1/5/15-minute EWMAs plus a
 * Histogram over an ExpDecaySample), driven by an injected clock.
 *
 * The behaviour follows github.com/rcrowley/go-metrics (ewma.go, meter.go,
 * sample.go) so the numbers burrow reports line up with ngrok's agent. The
 * two deliberate differences are noted where they occur: ticks are applied
 * lazily instead of by a global 5 s ticker, and a due rescale runs before the
 * new priority is computed instead of after, which is the same arithmetic
 * but cannot overflow after a long idle period.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_SEC           1e9
#define RESCALE_THRESHOLD_NS (3600ull * 1000000000ull)
/* Idle ticks past this many (one hour) are folded in closed form: the loop is
 * the exact go-metrics arithmetic, but after a day of idleness it would run
 * tens of thousands of times for a rate that is long since ~0. */
#define MAX_LOOPED_IDLE_TICKS 720u

/* ---- EWMA (go-metrics ewma.go) ---- */

static void ewma_init(bw_ewma_t *e, double minutes)
{
    /* NewEWMA1/5/15: alpha = 1 - exp(-5s / 60s / N). */
    e->alpha = 1.0 - exp(-5.0 / 60.0 / minutes);
    e->rate = 0.0;
    e->uncounted = 0;
    e->init = 0;
}

/* One 5 s tick: fold the events counted since the last tick. */
static void ewma_tick(bw_ewma_t *e)
{
    double instant = (double)e->uncounted / (double)BW_METRICS_TICK_NS;

    e->uncounted = 0;
    if (e->init) {
        e->rate += e->alpha * (instant - e->rate);
    } else {
        e->rate = instant;
        e->init = 1;
    }
}

/* `n` ticks that carry no events, e.g. after an idle gap. */
static void ewma_idle_ticks(bw_ewma_t *e, uint64_t n)
{
    uint64_t looped = n < MAX_LOOPED_IDLE_TICKS ? n : MAX_LOOPED_IDLE_TICKS;

    for (uint64_t i = 0; i < looped; i++)
        ewma_tick(e);
    if (n > looped)
        e->rate *= pow(1.0 - e->alpha, (double)(n - looped));
}

/* go-metrics keeps the rate per nanosecond and reports it per second. */
static double ewma_rate(const bw_ewma_t *e)
{
    return e->rate * NS_PER_SEC;
}

/* ---- random priorities ---- */

/* splitmix64 spreads small or similar seeds (0, 1, 2...) over the state
 * space; plain xorshift64* started from 1 yields poor first outputs. */
static uint64_t rng_seed_state(uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    /* xorshift's only fixed point is 0. */
    return z ? z : 0x2545f4914f6cdd1dull;
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in (0, 1]: go's rand.Float64 can return 0, which would make an
 * infinite priority; excluding 0 keeps every priority finite. */
static double rng_unit(uint64_t *state)
{
    return (double)((rng_next(state) >> 11) + 1) * 0x1.0p-53;
}

/* ---- reservoir: min-heap on priority (go-metrics expDecaySampleHeap) ---- */

static void heap_swap(bw_sample_t *a, bw_sample_t *b)
{
    bw_sample_t tmp = *a;

    *a = *b;
    *b = tmp;
}

static void heap_sift_up(bw_sample_t *h, size_t j)
{
    while (j > 0) {
        size_t parent = (j - 1) / 2;

        if (!(h[j].priority < h[parent].priority))
            break;
        heap_swap(&h[j], &h[parent]);
        j = parent;
    }
}

static void heap_sift_down(bw_sample_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t j = 2 * i + 1;

        if (j >= n)
            break;
        if (j + 1 < n && h[j + 1].priority < h[j].priority)
            j++;
        if (!(h[j].priority < h[i].priority))
            break;
        heap_swap(&h[i], &h[j]);
        i = j;
    }
}

static void heap_pop_min(bw_timer_metric_t *t)
{
    t->n_samples--;
    t->samples[0] = t->samples[t->n_samples];
    heap_sift_down(t->samples, t->n_samples, 0);
}

static void heap_push(bw_timer_metric_t *t, double priority, int64_t value)
{
    size_t j = t->n_samples++;

    t->samples[j].priority = priority;
    t->samples[j].value = value;
    heap_sift_up(t->samples, j);
}

/* ---- ExpDecaySample (go-metrics sample.go) ---- */

/* Signed seconds from `from` to `to`, as go's t.Sub(t0).Seconds(). */
static double seconds_between(uint64_t from, uint64_t to)
{
    if (to >= from)
        return (double)(to - from) / NS_PER_SEC;
    return -((double)(from - to) / NS_PER_SEC);
}

/* Move the decay landmark to `now`. Scaling every priority by one positive
 * factor keeps the heap ordered, so no re-heapify is needed (go-metrics
 * re-pushes everything, which yields the same set). */
static void sample_rescale(bw_timer_metric_t *t, uint64_t now_ns)
{
    double factor = exp(-BW_METRICS_ALPHA * seconds_between(t->start_ns, now_ns));

    for (size_t i = 0; i < t->n_samples; i++)
        t->samples[i].priority *= factor;
    t->start_ns = now_ns;
    t->rescale_ns = now_ns + RESCALE_THRESHOLD_NS;
}

static void sample_update(bw_timer_metric_t *t, int64_t value, uint64_t now_ns)
{
    double priority;

    /* go-metrics pushes first and rescales after; doing it first gives the
     * same priorities but never evaluates exp() of a huge idle gap, which
     * overflows to +Inf (and then Inf * 0 = NaN) after ~13 h of silence. It
     * rescales whether or not the reservoir is full. */
    if (now_ns > t->rescale_ns)
        sample_rescale(t, now_ns);
    /* go-metrics drops the lowest priority unconditionally when full, so
     * the newest value always enters; keep that rather than Dropwizard's
     * "replace only if higher". */
    if (t->n_samples == BW_METRICS_RESERVOIR)
        heap_pop_min(t);
    priority = exp(BW_METRICS_ALPHA * seconds_between(t->start_ns, now_ns)) / rng_unit(&t->rng);
    heap_push(t, priority, value);
}

/* ---- percentiles (go-metrics SamplePercentiles) ---- */

static int cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* See metrics.h. */
double bw_percentile_sorted(const int64_t *sorted, size_t n, double p)
{
    double pos, lower, upper;
    size_t idx;

    if (n == 0)
        return 0.0;
    pos = p * (double)(n + 1);
    /* Written as !(pos >= 1) so a NaN p lands here instead of in a cast. */
    if (!(pos >= 1.0))
        return (double)sorted[0];
    if (pos >= (double)n)
        return (double)sorted[n - 1];
    idx = (size_t)pos;
    lower = (double)sorted[idx - 1];
    upper = (double)sorted[idx];
    return lower + (pos - floor(pos)) * (upper - lower);
}

static void snapshot_percentiles(const bw_timer_metric_t *t, bw_metric_snapshot_t *out)
{
    int64_t values[BW_METRICS_RESERVOIR];
    size_t n = t->n_samples;

    for (size_t i = 0; i < n; i++)
        values[i] = t->samples[i].value;
    qsort(values, n, sizeof(values[0]), cmp_int64);
    out->p50 = bw_percentile_sorted(values, n, 0.50);
    out->p90 = bw_percentile_sorted(values, n, 0.90);
    out->p95 = bw_percentile_sorted(values, n, 0.95);
    out->p99 = bw_percentile_sorted(values, n, 0.99);
}

/* ---- public API ---- */

/* See metrics.h. `now_ns` is the landmark of both the 5 s tick grid and the
 * forward decay; `seed` makes the sampling reproducible. */
void bw_timer_metric_init(bw_timer_metric_t *t, uint64_t now_ns, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    ewma_init(&t->m1, 1.0);
    ewma_init(&t->m5, 5.0);
    ewma_init(&t->m15, 15.0);
    t->last_tick_ns = now_ns;
    t->start_ns = now_ns;
    t->rescale_ns = now_ns + RESCALE_THRESHOLD_NS;
    t->rng = rng_seed_state(seed);
}

/* See metrics.h. Only the first elapsed tick carries the pending events:
 * they happened before it, and every later tick saw none. */
void bw_timer_metric_tick(bw_timer_metric_t *t, uint64_t now_ns)
{
    bw_ewma_t *ewmas[] = {&t->m1, &t->m5, &t->m15};
    uint64_t n;

    if (now_ns <= t->last_tick_ns)
        return;
    n = (now_ns - t->last_tick_ns) / BW_METRICS_TICK_NS;
    if (n == 0)
        return;
    t->last_tick_ns += n * BW_METRICS_TICK_NS;
    for (size_t i = 0; i < sizeof(ewmas) / sizeof(ewmas[0]); i++) {
        ewma_tick(ewmas[i]);
        ewma_idle_ticks(ewmas[i], n - 1);
    }
}

/* See metrics.h. Ticks first so an event is never folded into a tick whose
 * boundary passed before the event happened. */
void bw_timer_metric_mark(bw_timer_metric_t *t, uint64_t now_ns)
{
    bw_timer_metric_tick(t, now_ns);
    t->count++;
    t->m1.uncounted++;
    t->m5.uncounted++;
    t->m15.uncounted++;
}

/* See metrics.h. go-metrics' Timer.Update: meter mark plus histogram sample. */
void bw_timer_metric_update(bw_timer_metric_t *t, int64_t dur_ns, uint64_t now_ns)
{
    bw_timer_metric_mark(t, now_ns);
    sample_update(t, dur_ns, now_ns);
}

/* See metrics.h. */
void bw_timer_metric_gauge_add(bw_timer_metric_t *t, int64_t delta)
{
    t->gauge += delta;
}

/* See metrics.h. */
void bw_timer_metric_snapshot(bw_timer_metric_t *t, uint64_t now_ns, bw_metric_snapshot_t *out)
{
    bw_timer_metric_tick(t, now_ns);
    out->count = t->count;
    out->gauge = t->gauge;
    out->rate1 = ewma_rate(&t->m1);
    out->rate5 = ewma_rate(&t->m5);
    out->rate15 = ewma_rate(&t->m15);
    snapshot_percentiles(t, out);
}
