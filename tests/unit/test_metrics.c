/* Unit tests for core/agent/metrics.c: go-metrics' Timer semantics under a
 * test-driven clock. Expected numbers are worked out by hand from the
 * go-metrics formulas (ewma.go, sample.go) in the comments next to them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define SEC  1000000000ull
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
/* A deliberately unaligned start: ticks are measured from init time. */
#define T0 1234567891ull

/* cmocka's assert_float_equal casts to float, too coarse for rates. */
#define assert_close(got, want, rel) assert_close_at((got), (want), (rel), __FILE__, __LINE__)

static void assert_close_at(double got, double want, double rel, const char *file, int line)
{
    double tol = rel * fabs(want);

    if (!(fabs(got - want) <= tol)) {
        print_error("%s:%d: got %.17g, want %.17g (rel %g)\n", file, line, got, want, rel);
        _fail(file, line);
    }
}

static bw_timer_metric_t *new_metric(uint64_t now, uint64_t seed)
{
    bw_timer_metric_t *t = malloc(sizeof(*t));

    assert_non_null(t);
    bw_timer_metric_init(t, now, seed);
    return t;
}

static void update_n(bw_timer_metric_t *t, int n, int64_t dur, uint64_t now)
{
    for (int i = 0; i < n; i++)
        bw_timer_metric_update(t, dur, now);
}

static size_t count_value(const bw_timer_metric_t *t, int64_t value)
{
    size_t n = 0;

    for (size_t i = 0; i < t->n_samples; i++)
        n += t->samples[i].value == value;
    return n;
}

static void assert_min_heap(const bw_timer_metric_t *t)
{
    for (size_t i = 1; i < t->n_samples; i++)
        assert_true(t->samples[(i - 1) / 2].priority <= t->samples[i].priority);
}

static void assert_priorities_finite(const bw_timer_metric_t *t)
{
    for (size_t i = 0; i < t->n_samples; i++) {
        assert_true(isfinite(t->samples[i].priority));
        assert_true(t->samples[i].priority >= 0.0);
    }
}

/* ---- Meter / EWMA ---- */

static void test_rates_zero_before_first_tick(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    update_n(t, 7, 1000, T0 + 1 * SEC);
    /* One nanosecond before the first 5 s boundary: nothing folded yet. */
    bw_timer_metric_snapshot(t, T0 + 5 * SEC - 1, &s);
    assert_int_equal(s.count, 7);
    assert_true(s.rate1 == 0.0);
    assert_true(s.rate5 == 0.0);
    assert_true(s.rate15 == 0.0);
    free(t);
}

static void test_first_tick_is_n_over_5(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    /* First tick: rate = instantRate = N / 5e9 per ns, reported * 1e9 = N/5
     * for all three windows (no alpha involved yet). 1e-15 relative allows
     * only the rounding of N/5e9*1e9 itself. */
    update_n(t, 10, 1000, T0 + 1 * SEC);
    bw_timer_metric_snapshot(t, T0 + 5 * SEC, &s);
    assert_close(s.rate1, 2.0, 1e-15);
    assert_close(s.rate5, 2.0, 1e-15);
    assert_close(s.rate15, 2.0, 1e-15);

    bw_timer_metric_init(t, T0, 2);
    update_n(t, 3, 1000, T0 + 4 * SEC);
    bw_timer_metric_snapshot(t, T0 + 6 * SEC, &s);
    assert_close(s.rate1, 0.6, 1e-15);
    assert_close(s.rate15, 0.6, 1e-15);
    free(t);
}

static void test_second_idle_tick_decays(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    update_n(t, 10, 1000, T0 + 1 * SEC);
    bw_timer_metric_snapshot(t, T0 + 5 * SEC, &s);
    /* Second tick, no events: rate += alpha * (0 - rate) = 2 * (1 - alpha)
     * with 1 - alpha = exp(-5/60/N):
     *   m1:  2 * exp(-1/12)  = 1.8400888292586468
     *   m5:  2 * exp(-1/60)  = 1.9669429076432352
     *   m15: 2 * exp(-1/180) = 1.9889196960097937 */
    bw_timer_metric_snapshot(t, T0 + 10 * SEC, &s);
    assert_close(s.rate1, 1.8400888292586468, 1e-13);
    assert_close(s.rate5, 1.9669429076432352, 1e-13);
    assert_close(s.rate15, 1.9889196960097937, 1e-13);
    free(t);
}

static void test_lazy_gap_equals_explicit_ticks(void **state)
{
    bw_timer_metric_t *lazy = new_metric(T0, 1);
    bw_timer_metric_t *stepped = new_metric(T0, 1);
    bw_metric_snapshot_t a, b;

    update_n(lazy, 10, 1000, T0 + 1 * SEC);
    update_n(stepped, 10, 1000, T0 + 1 * SEC);
    bw_timer_metric_tick(lazy, T0 + 5 * SEC);
    for (int i = 1; i <= 13; i++)
        bw_timer_metric_tick(stepped, T0 + (uint64_t)i * 5 * SEC);
    /* 60 s idle after the first tick = 12 zero ticks in one call. */
    bw_timer_metric_snapshot(lazy, T0 + 65 * SEC, &a);
    bw_timer_metric_snapshot(stepped, T0 + 65 * SEC, &b);
    assert_true(a.rate1 == b.rate1);
    assert_true(a.rate5 == b.rate5);
    assert_true(a.rate15 == b.rate15);
    assert_int_equal(lazy->last_tick_ns, T0 + 65 * SEC);
    /* 2 * (1 - alpha)^12 = 2 * exp(-12 * 5/60/N):
     *   m1: 2e^-1, m5: 2e^-0.2, m15: 2e^(-1/15) */
    assert_close(a.rate1, 0.7357588823428847, 1e-12);
    assert_close(a.rate5, 1.6374615061559636, 1e-12);
    assert_close(a.rate15, 1.8710139700632356, 1e-12);
    free(lazy);
    free(stepped);
}

static void test_gap_spanning_ticks_folds_events_once(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    /* Events at 1 s, first look at 12 s: the 5 s tick carries them, the 10 s
     * tick carries none -> 2 * exp(-1/12), as in the explicit case. */
    update_n(t, 10, 1000, T0 + 1 * SEC);
    bw_timer_metric_snapshot(t, T0 + 12 * SEC, &s);
    assert_close(s.rate1, 1.8400888292586468, 1e-13);
    free(t);
}

static void test_event_after_boundary_waits_for_next_tick(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    /* The event at 7 s happened after the 5 s boundary, so the 5 s tick
     * (applied lazily by the update) folds 0 and initialises the EWMA. */
    bw_timer_metric_update(t, 1000, T0 + 7 * SEC);
    bw_timer_metric_snapshot(t, T0 + 9 * SEC, &s);
    assert_true(s.rate1 == 0.0);
    /* The 10 s tick folds it: 0 + alpha1 * (1/5 - 0) = 0.2 * (1 - e^-1/12)
     * = 0.015991117074135343. */
    bw_timer_metric_snapshot(t, T0 + 10 * SEC, &s);
    assert_close(s.rate1, 0.015991117074135343, 1e-13);
    free(t);
}

static void test_day_long_gap_decays_in_closed_form(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    update_n(t, 10, 1000, T0 + 1 * SEC);
    /* 17280 ticks in a day: the first folds 10 events (2/s), then 17279 zero
     * ticks: m15 = 2 * exp(-17279/180) = 4.084815826017782e-42; m1's
     * 2 * exp(-17279/12) underflows to 0. */
    bw_timer_metric_snapshot(t, T0 + 24 * HOUR, &s);
    assert_close(s.rate15, 4.084815826017782e-42, 1e-9);
    assert_true(s.rate1 >= 0.0 && s.rate1 < 1e-300);
    assert_int_equal(t->last_tick_ns, T0 + 24 * HOUR);
    free(t);
}

static void test_mark_counts_without_sample(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    for (int i = 0; i < 5; i++)
        bw_timer_metric_mark(t, T0 + 2 * SEC);
    bw_timer_metric_snapshot(t, T0 + 5 * SEC, &s);
    assert_int_equal(s.count, 5);
    assert_close(s.rate1, 1.0, 1e-15);
    assert_int_equal(t->n_samples, 0);
    assert_true(s.p50 == 0.0 && s.p99 == 0.0);
    free(t);
}

static void test_gauge_add(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    bw_timer_metric_gauge_add(t, 1);
    bw_timer_metric_gauge_add(t, 1);
    bw_timer_metric_gauge_add(t, -1);
    bw_timer_metric_snapshot(t, T0, &s);
    assert_int_equal(s.gauge, 1);
    assert_int_equal(s.count, 0);
    free(t);
}

/* ---- percentiles ---- */

static void test_percentile_interpolation(void **state)
{
    static const int64_t one_to_ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    static const int64_t spread[] = {100, 200, 400, 800};
    static const int64_t single[] = {42};

    /* n = 10, pos = p * 11:
     *   p50: pos 5.5   -> v[4] + 0.5 * (v[5] - v[4]) = 5 + 0.5 = 5.5
     *   p90: pos 9.9   -> v[8] + 0.9 * (v[9] - v[8]) = 9 + 0.9 = 9.9
     *   p95: pos 10.45 >= n -> max = 10
     *   p99: pos 10.89 >= n -> max = 10
     *   p25: pos 2.75  -> v[1] + 0.75 * (v[2] - v[1]) = 2.75
     *   p05: pos 0.55  < 1 -> min = 1 */
    assert_close(bw_percentile_sorted(one_to_ten, 10, 0.50), 5.5, 1e-12);
    assert_close(bw_percentile_sorted(one_to_ten, 10, 0.90), 9.9, 1e-12);
    assert_close(bw_percentile_sorted(one_to_ten, 10, 0.95), 10.0, 1e-12);
    assert_close(bw_percentile_sorted(one_to_ten, 10, 0.99), 10.0, 1e-12);
    assert_close(bw_percentile_sorted(one_to_ten, 10, 0.25), 2.75, 1e-12);
    assert_close(bw_percentile_sorted(one_to_ten, 10, 0.05), 1.0, 1e-12);
    /* n = 4, pos = p * 5: p50 -> 2.5 -> 200 + 0.5 * 200 = 300;
     * p70 -> 3.5 -> 400 + 0.5 * 400 = 600; p90 -> 4.5 >= n -> 800. */
    assert_close(bw_percentile_sorted(spread, 4, 0.50), 300.0, 1e-12);
    assert_close(bw_percentile_sorted(spread, 4, 0.70), 600.0, 1e-12);
    assert_close(bw_percentile_sorted(spread, 4, 0.90), 800.0, 1e-12);
    /* p80: pos = 0.8 * 5 = 4.0 exactly = n -> max, never v[n] (past the end;
     * ASan catches a > instead of >= here). */
    assert_close(bw_percentile_sorted(spread, 4, 0.80), 800.0, 1e-12);
    /* n = 1: pos = 2p, either < 1 (min) or >= 1 = n (max); both are 42. */
    assert_close(bw_percentile_sorted(single, 1, 0.10), 42.0, 1e-12);
    assert_close(bw_percentile_sorted(single, 1, 0.99), 42.0, 1e-12);
    assert_close(bw_percentile_sorted(single, 1, 0.50), 42.0, 1e-12);
    assert_true(bw_percentile_sorted(NULL, 0, 0.5) == 0.0);
}

static void test_snapshot_percentiles(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 7);
    bw_metric_snapshot_t s;

    /* Reverse order so the snapshot has to sort: 10 ms .. 1 ms. */
    for (int64_t ms = 10; ms >= 1; ms--)
        bw_timer_metric_update(t, ms * 1000000, T0 + (uint64_t)(11 - ms) * SEC);
    bw_timer_metric_snapshot(t, T0 + 20 * SEC, &s);
    assert_int_equal(s.count, 10);
    /* Same values as 1..10 above, scaled to nanoseconds. */
    assert_close(s.p50, 5.5e6, 1e-12);
    assert_close(s.p90, 9.9e6, 1e-12);
    assert_close(s.p95, 10e6, 1e-12);
    assert_close(s.p99, 10e6, 1e-12);
    free(t);
}

static void test_snapshot_empty_is_zero(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 1);
    bw_metric_snapshot_t s;

    /* Poison the output so a field the snapshot forgets shows up. */
    memset(&s, 0xff, sizeof(s));
    bw_timer_metric_snapshot(t, T0 + HOUR, &s);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.gauge, 0);
    assert_true(s.rate1 == 0.0 && s.rate5 == 0.0 && s.rate15 == 0.0);
    assert_true(s.p50 == 0.0 && s.p90 == 0.0);
    assert_true(s.p95 == 0.0 && s.p99 == 0.0);
    free(t);
}

/* ---- reservoir ---- */

static void test_reservoir_caps(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 3);

    for (int i = 0; i < 5000; i++)
        bw_timer_metric_update(t, i, T0 + (uint64_t)i * 10000000);
    assert_int_equal(t->count, 5000);
    assert_int_equal(t->n_samples, BW_METRICS_RESERVOIR);
    assert_min_heap(t);
    free(t);
}

static void test_reservoir_prefers_recent(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 4);

    update_n(t, BW_METRICS_RESERVOIR, 1, T0 + 1 * SEC);
    /* Ten minutes later new priorities are e^(0.015*600) ~ 8100x larger, so
     * an old value survives only if its u < ~1/8100: expect ~0 of them. A
     * uniform reservoir would keep about half. */
    update_n(t, BW_METRICS_RESERVOIR, 2, T0 + 10 * MIN);
    assert_int_equal(t->n_samples, BW_METRICS_RESERVOIR);
    assert_true(count_value(t, 2) >= BW_METRICS_RESERVOIR - 8);
    assert_min_heap(t);
    free(t);
}

static void test_full_reservoir_always_takes_newest(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 5);
    int missed = 0;

    /* go-metrics pops the minimum before every push once full, so the
     * newest value always enters. A "replace only if higher" reservoir
     * rejects a same-time newcomer whose u exceeds every resident's, about
     * 1 in 1029, so ~4 of these 4000 would go missing. */
    update_n(t, BW_METRICS_RESERVOIR, -1, T0 + 30 * MIN);
    for (int i = 0; i < 4000; i++) {
        bw_timer_metric_update(t, i, T0 + 30 * MIN);
        missed += count_value(t, i) != 1;
    }
    assert_int_equal(missed, 0);
    free(t);
}

static void test_rescale_after_an_hour(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 6);
    uint64_t later;

    /* Fill over the first hour: priorities reach e^(0.015*3600) = e^54.
     * Markers after the fill are negative so they never collide with it. */
    for (int i = 0; i < BW_METRICS_RESERVOIR; i++)
        bw_timer_metric_update(t, i, T0 + (uint64_t)i * 3 * SEC);
    assert_int_equal(t->start_ns, T0);
    bw_timer_metric_update(t, -7, T0 + HOUR);
    assert_int_equal(t->start_ns, T0); /* due only strictly after t1 */
    later = T0 + HOUR + 1;
    bw_timer_metric_update(t, -8, later);
    assert_int_equal(t->start_ns, later);
    assert_int_equal(t->rescale_ns, later + HOUR);
    assert_priorities_finite(t);
    assert_min_heap(t);
    /* Landmark moved to now: the newest priority is 1/u, u in (0, 1]. */
    assert_int_equal(count_value(t, -8), 1);
    for (size_t i = 0; i < t->n_samples; i++)
        if (t->samples[i].value == -8)
            assert_true(t->samples[i].priority >= 1.0);
    /* After 20 idle hours exp(0.015 * 72000 s) overflows; rescaling first
     * keeps everything finite and the heap usable. */
    later += 20 * HOUR;
    bw_timer_metric_update(t, -9, later);
    assert_int_equal(t->start_ns, later);
    assert_priorities_finite(t);
    assert_min_heap(t);
    assert_int_equal(count_value(t, -9), 1);
    free(t);
}

static void test_rescale_when_not_full(void **state)
{
    bw_timer_metric_t *t = new_metric(T0, 8);

    /* go-metrics rescales on the first update past t1 whether or not the
     * reservoir is full. */
    bw_timer_metric_update(t, 1, T0 + 1 * SEC);
    bw_timer_metric_update(t, 2, T0 + 2 * HOUR);
    assert_int_equal(t->start_ns, T0 + 2 * HOUR);
    assert_int_equal(t->n_samples, 2);
    assert_priorities_finite(t);
    free(t);
}

static void test_seed_makes_sampling_deterministic(void **state)
{
    bw_timer_metric_t *a = new_metric(T0, 42);
    bw_timer_metric_t *b = new_metric(T0, 42);
    bw_timer_metric_t *c = new_metric(T0, 43);

    for (int i = 0; i < 50; i++) {
        bw_timer_metric_update(a, i, T0 + (uint64_t)i * SEC);
        bw_timer_metric_update(b, i, T0 + (uint64_t)i * SEC);
        bw_timer_metric_update(c, i, T0 + (uint64_t)i * SEC);
    }
    assert_memory_equal(a->samples, b->samples, sizeof(a->samples[0]) * a->n_samples);
    assert_memory_not_equal(a->samples, c->samples, sizeof(a->samples[0]) * a->n_samples);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates_zero_before_first_tick),
        cmocka_unit_test(test_first_tick_is_n_over_5),
        cmocka_unit_test(test_second_idle_tick_decays),
        cmocka_unit_test(test_lazy_gap_equals_explicit_ticks),
        cmocka_unit_test(test_gap_spanning_ticks_folds_events_once),
        cmocka_unit_test(test_event_after_boundary_waits_for_next_tick),
        cmocka_unit_test(test_day_long_gap_decays_in_closed_form),
        cmocka_unit_test(test_mark_counts_without_sample),
        cmocka_unit_test(test_gauge_add),
        cmocka_unit_test(test_percentile_interpolation),
        cmocka_unit_test(test_snapshot_percentiles),
        cmocka_unit_test(test_snapshot_empty_is_zero),
        cmocka_unit_test(test_reservoir_caps),
        cmocka_unit_test(test_reservoir_prefers_recent),
        cmocka_unit_test(test_full_reservoir_always_takes_newest),
        cmocka_unit_test(test_rescale_after_an_hour),
        cmocka_unit_test(test_rescale_when_not_full),
        cmocka_unit_test(test_seed_makes_sampling_deterministic),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
