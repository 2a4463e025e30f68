"""server/metrics.py: names, labels and the Prometheus text."""

from __future__ import annotations

from server.batching import BatchStats
from server.metrics import Metrics
from tests.serverkit import metric


def test_labelled_counts_and_batches_reach_the_text_format() -> None:
    m, other = Metrics(), Metrics()
    for _ in range(3):
        m.count(m.errors, "no_stroke")
    m.count(m.predictions, "live")
    m.observe_batch(BatchStats(4, (0.001, 0.002, 0.0, 0.004), 0.003))
    text = m.render().decode()
    assert metric(text, "digits_errors_total", '{code="no_stroke"}') == 3
    assert metric(text, "digits_predictions_total", '{kind="live"}') == 1
    assert metric(text, "digits_batch_size_sum") == 4
    assert metric(text, "digits_queue_wait_seconds_count") == 4
    assert metric(text, "digits_inference_seconds_count") == 1
    assert metric(other.render().decode(), "digits_errors_total", '{code="no_stroke"}') == 0
