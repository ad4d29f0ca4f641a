"""Prometheus metrics of a worker, served on ``MOODRING_METRICS_PORT`` when it is set.

The metrics live in the worker's own registry whether or not they are served, so tests (and
``tests/test_monitoring.py``, which checks that every series a rule or the dashboard uses
exists) can read them without a port. Names follow Prometheus conventions: ``_total`` for
counters, base units (seconds) in the name.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info, start_http_server
from prometheus_client import Counter as PCounter

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
STAGE_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """A worker's jobs, latency, batches, stages, dead letters, backlog and model version."""

    def __init__(self, registry: CollectorRegistry | None = None, serving: bool = False) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.enabled = serving  # the backlog gauge costs a Redis read per beat: only when scraped
        self.jobs = PCounter(
            "moodring_jobs", "Jobs settled, by outcome (ok or an error code)", ["outcome"], registry=r
        )
        self.latency = Histogram(
            "moodring_job_latency_seconds",
            "From submit to the stored answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "moodring_batch_size", "Jobs per model batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.stages = Histogram(
            "moodring_stage_seconds",
            "Time per photo in each stage of the pipeline (decode, detect, classify, render, ...)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.dead_letters = PCounter(
            "moodring_dead_letters",
            "Entries moved to the dead-letter stream, by the code answered",
            ["code"],
            registry=r,
        )
        self.depth = Gauge(
            "moodring_queue_depth", "Backlog: entries not yet read plus read but unacknowledged", registry=r
        )
        self.info = Info(
            "moodring_worker", "The model, community adapter and precision this worker serves", registry=r
        )
        self.info.info({"model": "", "adapter": "none", "precision": "unknown"})
        self.batch_sizes: Counter[int] = Counter()  # for the stop log line
        self.outcomes: Counter[str] = Counter()

    @classmethod
    def start(cls, port: int | None) -> Metrics:
        """Metrics for a worker; served over HTTP on ``port`` when given."""
        metrics = cls(serving=port is not None)
        if port is not None:
            start_http_server(port, registry=metrics.registry)
            log.info("metrics on :%d/metrics", port)
        return metrics

    def serves(self, model: str, adapter: str, precision: str = "") -> None:
        """The versions this worker answers with (the adapter changes when a new one is activated)
        and the precision its network runs in."""
        self.info.info({"model": model, "adapter": adapter or "none", "precision": precision or "unknown"})

    def observe(self, outcome: str, latency_s: float, timings_ms: Mapping[str, float] | None = None) -> None:
        """One job settled: ``ok``, an error code, ``dead_letter``, or ``rerun`` (answered before)."""
        self.outcomes[outcome] += 1
        self.jobs.labels(outcome).inc()
        if outcome not in ("dead_letter", "rerun"):
            self.latency.observe(latency_s)
        for stage, ms in (timings_ms or {}).items():
            if stage != "batch":  # the whole batch's time, not one photo's stage
                self.stages.labels(stage).observe(ms / 1000)

    def dead_letter(self, code: str) -> None:
        self.observe("dead_letter", 0.0)
        self.dead_letters.labels(code).inc()

    def batched(self, size: int) -> None:
        self.batch_sizes[size] += 1
        self.batch.observe(size)
