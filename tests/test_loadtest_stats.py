"""The load test's arithmetic, without clients: histograms merge and give percentiles."""

import numpy as np
import pytest

from dashboard.loadtest.stats import Interval, histogram, percentile


def test_histogram_percentiles_are_within_a_bin_of_the_exact_ones():
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(np.log(40), 0.6, 100_000)
    h = histogram(latencies)
    for q in (0.5, 0.9, 0.99):
        assert percentile(h, q) == pytest.approx(np.quantile(latencies, q), rel=0.03)
    assert percentile(h, 1.0) >= latencies.max()


def test_intervals_from_several_workers_add_up():
    a, b = Interval(frames=10, bytes=100, gaps=1), Interval(frames=5, bytes=50)
    a.latency += histogram(np.array([10.0, 20.0]))
    b.latency += histogram(np.array([30.0]))
    a.add(Interval.from_json(b.to_json()))
    assert (a.frames, a.bytes, a.gaps, int(a.latency.sum())) == (15, 150, 1, 3)
    assert percentile(a.latency, 1.0) == pytest.approx(30.0, rel=0.03)


def test_an_empty_histogram_has_no_percentile():
    assert percentile(Interval().latency, 0.5) is None
