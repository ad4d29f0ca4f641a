"""The monitoring profile: alert rules pass promtool (checked and unit-tested), and every series a
rule or the dashboard reads is one the code exports (no panel or alert on a missing series)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from bot.metrics import BotMetrics
from inference.worker.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
MON = ROOT / "monitoring"
PROMETHEUS_BUILTIN = {"up"}
SERIES = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?=\{|\[|\)|$|\s*[=!<>+*/-]|\s+(?:and|or|unless)\b)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (apt-get install -y prometheus); `make test` installs it")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_alert_rules_and_the_config_pass_promtool() -> None:
    for args in (
        ("check", "rules", "monitoring/prometheus/alerts.yml"),
        ("check", "config", "monitoring/prometheus/prometheus.yml"),
    ):
        done = promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_has_a_unit_test_and_they_pass() -> None:
    rules = yaml.safe_load((MON / "prometheus/alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MON / "prometheus/alerts.test.yml").read_text())
    tested = {a["alertname"] for t in tests["tests"] for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert tested == alerts  # every alert is shown to fire at least once
    done = promtool("test", "rules", "monitoring/prometheus/alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    operations = (ROOT / "docs/operations.md").read_text()
    for alert in alerts:  # and the runbook says what it means and what to do
        assert f"### {alert}" in operations, alert


def exported(registry: CollectorRegistry) -> set[str]:
    """The series names a registry exposes, whether or not a labelled child exists yet."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
    }
    return {f.name + s for f in registry.collect() for s in suffixes[f.type]}


def used_series(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords and label names left out)."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expr)
    without_by = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_labels)
    names = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", without_by))
    return {n for n in names if n.startswith("moodring_")} | (names & PROMETHEUS_BUILTIN)


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load((MON / "prometheus/alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    dash = json.loads((MON / "grafana/dashboards/moodring.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_every_series_the_rules_and_the_dashboard_read_is_exported() -> None:
    have = exported(BotMetrics().registry) | exported(Metrics().registry) | PROMETHEUS_BUILTIN
    for expr in _rule_exprs() + _dashboard_exprs():
        used = used_series(expr)
        assert used, expr
        assert used <= have, f"{expr}: not exported: {used - have}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    dash = json.loads((MON / "grafana/dashboards/moodring.json").read_text())
    source = yaml.safe_load((MON / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {uid}
    used = set().union(*(used_series(e) for e in _dashboard_exprs()))
    for series in (
        "moodring_jobs_total",  # throughput and outcomes
        "moodring_job_latency_seconds_bucket",  # latency percentiles
        "moodring_queue_depth",  # backlog
        "moodring_batch_size_bucket",
        "moodring_workers_alive",
        "moodring_redis_memory_used_bytes",
        "moodring_stage_seconds_bucket",
        "moodring_bot_reply_seconds_bucket",
    ):
        assert series in used, series


def test_compose_runs_the_monitoring_profile_on_the_files_here() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
        assert all(str(p).startswith("127.0.0.1:") for p in services[name].get("ports", []))
    config = yaml.safe_load((MON / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    bot_port = jobs["moodring-bot"]["static_configs"][0]["targets"][0].split(":")[1]
    assert services["bot"]["environment"]["MOODRING_BOT_METRICS_PORT"] == bot_port
    worker_sd = jobs["moodring-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]  # every replica of `--scale worker=N`
    assert services["worker"]["environment"]["MOODRING_METRICS_PORT"] == str(worker_sd["port"])
