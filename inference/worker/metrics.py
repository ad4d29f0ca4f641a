"""Prometheus metrics of a worker (off unless ``MOODRING_METRICS_PORT`` is set)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Prometheus metrics if prometheus-client is installed and a port is configured."""

    enabled: bool = False
    jobs: Any = None
    latency: Any = None
    batch: Any = None
    depth: Any = None
    batch_sizes: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # kept with or without Prometheus

    @classmethod
    def start(cls, port: int | None) -> Metrics:
        if port is None:
            return cls()
        from prometheus_client import Counter as PCounter
        from prometheus_client import Gauge, Histogram, start_http_server

        start_http_server(port)
        log.info("metrics on :%d/metrics", port)
        return cls(
            enabled=True,
            jobs=PCounter("moodring_jobs_total", "Jobs finished", ["outcome"]),
            latency=Histogram(
                "moodring_job_latency_seconds", "Submit to result", buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
            ),
            batch=Histogram("moodring_batch_size", "Jobs per model batch", buckets=(1, 2, 4, 8, 16, 32)),
            depth=Gauge("moodring_queue_depth", "Backlog: lag + pending"),
        )

    def observe(self, outcome: str, latency_s: float) -> None:
        """One job settled: ``ok``, an error code, ``dead_letter``, or ``rerun`` (answered before)."""
        self.outcomes[outcome] += 1
        if self.enabled:
            self.jobs.labels(outcome).inc()
            self.latency.observe(latency_s)
