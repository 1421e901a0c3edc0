/* Tunnel metrics with ngrok's (go-metrics') semantics.
 *
 * A bw_timer_metric is go-metrics' Timer: a count, a Meter (1/5/15-minute
 * EWMA rates in events per second, ticked every 5 s) and a Histogram over an
 * exponentially decaying reservoir (1028 samples, alpha 0.015) whose
 * percentiles are interpolated as go-metrics does. The "conns" metric also
 * keeps a gauge of open connections. Durations are nanoseconds.
 *
 * The clock is injected so tests can drive time: every function that needs
 * the time takes `now_ns` (monotonic nanoseconds).
 */
#ifndef BW_CORE_METRICS_H
#define BW_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define BW_METRICS_RESERVOIR 1028
#define BW_METRICS_ALPHA     0.015
#define BW_METRICS_TICK_NS   5000000000ull

typedef struct bw_ewma {
    double alpha;
    double rate; /* events per nanosecond, as go-metrics keeps it */
    uint64_t uncounted;
    int init;
} bw_ewma_t;

typedef struct bw_sample {
    double priority;
    int64_t value;
} bw_sample_t;

typedef struct bw_timer_metric {
    int64_t count;
    int64_t gauge; /* open connections; unused for http */
    bw_ewma_t m1, m5, m15;
    uint64_t last_tick_ns; /* time of the last 5 s tick */
    /* Exponentially decaying reservoir: a min-heap on priority. */
    bw_sample_t samples[BW_METRICS_RESERVOIR];
    size_t n_samples;
    uint64_t start_ns;   /* landmark of the forward decay */
    uint64_t rescale_ns; /* rescale on the first update after this */
    uint64_t rng;        /* xorshift state for priorities */
} bw_timer_metric_t;

/* A snapshot as the API prints it. */
typedef struct bw_metric_snapshot {
    int64_t count;
    int64_t gauge;
    double rate1, rate5, rate15;
    double p50, p90, p95, p99;
} bw_metric_snapshot_t;

void bw_timer_metric_init(bw_timer_metric_t *t, uint64_t now_ns, uint64_t seed);
/* Record one event (a finished connection or request) lasting `dur_ns`. */
void bw_timer_metric_update(bw_timer_metric_t *t, int64_t dur_ns, uint64_t now_ns);
/* Count one event for the rates without a duration sample. */
void bw_timer_metric_mark(bw_timer_metric_t *t, uint64_t now_ns);
/* Advance EWMA ticks up to `now_ns` (each 5 s boundary passed folds the
 * events counted since the previous tick). Called by snapshot too. */
void bw_timer_metric_tick(bw_timer_metric_t *t, uint64_t now_ns);
/* Move the open-connection gauge by `delta` (+1 on open, -1 on close). */
void bw_timer_metric_gauge_add(bw_timer_metric_t *t, int64_t delta);
/* Fill `out`; p* are 0 when there are no samples. */
void bw_timer_metric_snapshot(bw_timer_metric_t *t, uint64_t now_ns, bw_metric_snapshot_t *out);

/* go-metrics' SampleSnapshot.Percentile on sorted values (exposed for tests):
 * pos = p*(n+1); pos<1 -> min; pos>=n -> max; else linear interpolation. */
double bw_percentile_sorted(const int64_t *sorted, size_t n, double p);

#endif /* BW_CORE_METRICS_H */
