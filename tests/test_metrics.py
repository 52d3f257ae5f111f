"""inferlab.metrics: the serving metrics every lab and tool shares."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from inferlab import metrics


def test_latency_metrics_definitions():
    m = metrics.latency_metrics([10.2, 10.3, 10.45, 10.5], 10.0)
    assert m["ttft"] == pytest.approx(0.2)
    assert m["e2el"] == pytest.approx(0.5)
    assert m["itl"] == pytest.approx([0.1, 0.15, 0.05])
    assert m["tpot"] == pytest.approx(0.1)
    assert m["n_tokens"] == 4
    assert m["e2el"] == pytest.approx(m["ttft"] + (m["n_tokens"] - 1) * m["tpot"])
    assert math.isclose(sum(m["itl"]) / len(m["itl"]), m["tpot"])


def test_latency_metrics_single_token_and_empty():
    m = metrics.latency_metrics([1.5], 1.0)
    assert m["tpot"] is None and m["itl"] == [] and m["ttft"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.latency_metrics([], 0.0)


def test_percentile_matches_numpy_and_rejects_nonsense():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 64, 1001):
        values = list(rng.lognormal(size=n))
        for q in (0, 1, 25, 50, 90, 99, 99.9, 100):
            assert metrics.percentile(values, q) == pytest.approx(np.percentile(values, q))
    with pytest.raises(ValueError):
        metrics.percentile([], 50)
    with pytest.raises(ValueError):
        metrics.percentile([1.0], 101)


def test_parse_slo():
    assert metrics.parse_slo(["ttft:500", "tpot:50"]) == {"ttft": 500.0, "tpot": 50.0}
    assert metrics.parse_slo("e2el:2000") == {"e2el": 2000.0}
    for bad in (["ttfb:10"], ["ttft"], ["ttft:fast"], ["tpot:-1"]):
        with pytest.raises(ValueError, match="ttft|milliseconds|negative"):
            metrics.parse_slo(bad)


def _chunk(text=None, chat=True):
    choice = SimpleNamespace(delta=SimpleNamespace(content=text)) if chat else SimpleNamespace(text=text)
    return SimpleNamespace(choices=[choice])


def test_ttft_of_a_stream_is_the_first_chunk_with_text():
    events = [(10.1, _chunk(None)), (10.2, _chunk("")), (10.4, _chunk("Hi")), (10.5, _chunk(" there"))]
    assert metrics.time_to_first_token(events, 10.0) == pytest.approx(0.4)
    assert metrics.time_to_first_token([(1.3, _chunk("x", chat=False))], 1.0) == pytest.approx(0.3)
    assert metrics.time_to_first_token([(1.0, SimpleNamespace(choices=[]))], 0.0) is None   # a usage-only chunk


def test_load_summary():
    results = [{"completion_tokens": 10, "ttft": 0.5, "tpot": 0.1}, {"completion_tokens": 1, "ttft": 1.5, "tpot": None},
               {"completion_tokens": 20, "ttft": 0.25, "tpot": 0.2}]
    s = metrics.load_summary(results, 2.0)
    assert s == pytest.approx({"requests": 3, "output_tokens": 31, "throughput": 15.5, "ttft_mean": 0.75,
                               "ttft_median": 0.5, "ttft_max": 1.5, "tpot_mean": 0.15})
