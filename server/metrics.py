"""Prometheus metrics of one app, in a registry of its own (so apps and tests never share).

Belongs here: metric names, labels and buckets. Nothing here decides behaviour.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.batching import BatchStats

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """All server metrics; `render()` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Counter, str], Counter] = {}
        r = self.registry
        self.connections = Gauge("digits_connections", "Open WebSocket connections", registry=r)
        self.messages = Counter(
            "digits_messages", "Client messages received, by type", ["type"], registry=r
        )
        self.predictions = Counter(
            "digits_predictions", "Predictions sent, by kind", ["kind"], registry=r
        )
        self.dropped = Counter(
            "digits_predictions_dropped",
            "Live predictions dropped: superseded while the client was not reading",
            registry=r,
        )
        self.paced = Counter(
            "digits_ink_paced",
            "Ink messages held back until their points budget refilled (server/budget.py)",
            registry=r,
        )
        self.batch_size = Histogram(
            "digits_batch_size", "Images per inference batch", buckets=_SIZES, registry=r
        )
        self.queue_wait = Histogram(
            "digits_queue_wait_seconds",
            "Time an image waited for its batch",
            buckets=_FAST,
            registry=r,
        )
        self.inference = Histogram(
            "digits_inference_seconds",
            "Time to rasterize and run one batch",
            buckets=_FAST,
            registry=r,
        )
        self.latency = Histogram(
            "digits_update_to_prediction_seconds",
            "From receiving the newest update a prediction reflects to sending it",
            buckets=_FAST,
            registry=r,
        )
        self.errors = Counter(
            "digits_errors", "Errors sent to clients, by code", ["code"], registry=r
        )
        self.http_requests = Counter(
            "digits_http_requests",
            "POST /v1/recognize requests, by body kind and HTTP status",
            ["kind", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "digits_http_request_seconds",
            "POST /v1/recognize: from the request's start to its answer, by body kind",
            ["kind"],
            buckets=_FAST,
            registry=r,
        )
        self.http_items = Counter(
            "digits_http_items", "Drawings and images recognized over HTTP", ["kind"], registry=r
        )
        self.image_seconds = Histogram(
            "digits_image_preprocess_seconds",
            "Time to decode one image and make its 28x28 model input",
            buckets=_FAST,
            registry=r,
        )

    def count(self, counter: Counter, label: str) -> None:
        """counter{label}++ -- with the labelled child cached (labels() is slow per call)."""
        child = self._children.get((counter, label))
        if child is None:
            child = self._children[(counter, label)] = counter.labels(label)
        child.inc()

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.inference.observe(stats.run_s)
        for wait in stats.waits:
            self.queue_wait.observe(wait)

    def render(self) -> bytes:
        return generate_latest(self.registry)
