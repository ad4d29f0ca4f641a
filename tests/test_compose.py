"""No Docker engine runs here: check docker-compose.yml against the code it deploys."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic_settings import BaseSettings

from bot.settings import BotSettings
from inference.cli import COMMANDS
from inference.worker.settings import WorkerSettings
from recommender.sources import sources

ROOT = Path(__file__).resolve().parents[1]


def _env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_health() -> None:
    services = _compose()["services"]
    assert set(services) == {"redis", "redis-blobs", "worker", "bot", "doctor", "prometheus", "grafana"}
    always = {n for n, s in services.items() if "profiles" not in s}
    assert always == {"redis", "redis-blobs", "worker", "bot"}  # the rest on request (profiles)
    for name in ("redis", "redis-blobs", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("worker", "bot"):
        for redis in ("redis", "redis-blobs"):
            assert services[name]["depends_on"][redis]["condition"] == "service_healthy"
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert all(str(p).startswith("127.0.0.1:") for p in redis.get("ports", []))
    assert "deploy" not in services["worker"] or "replicas" not in services["worker"]["deploy"]
    assert "container_name" not in services["worker"]  # --scale worker=N needs unnamed containers


def test_photos_live_only_in_the_redis_that_never_persists() -> None:
    services = _compose()["services"]
    blobs = services["redis-blobs"]
    command = blobs["command"]
    assert command[command.index("--appendonly") + 1] == "no" and command[command.index("--save") + 1] == ""
    assert "volumes" not in blobs and "ports" not in blobs
    for name in ("worker", "bot"):
        assert services[name]["environment"]["MOODRING_BLOB_REDIS_URL"].startswith("redis://redis-blobs:")


def test_commands_exist_in_the_cli() -> None:
    services = _compose()["services"]
    for name in ("worker", "bot", "doctor"):
        cmd = services[name]["command"]
        assert cmd[0] == "moodring" and cmd[1] in COMMANDS, cmd
    check = services["worker"]["healthcheck"]["test"]
    assert check[1:4] == ["moodring", "worker", "--check"]


def test_environment_names_match_settings_classes() -> None:
    services = _compose()["services"]
    allowed = {
        "worker": _env_names(WorkerSettings),
        "bot": _env_names(BotSettings).union(*(_env_names(s.settings_cls) for s in sources())),
    }
    allowed["doctor"] = allowed["bot"]
    for name, names in allowed.items():
        env = set(services[name]["environment"])
        assert env <= names, f"{name}: unknown variables {env - names}"
    assert "MOODRING_DISCORD_TOKEN" in services["bot"]["environment"]


def test_dockerfile_runs_as_non_root_and_bakes_weights() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("USER moodring") == 2
    assert "load_model()" in text  # weights come from the repo and are verified at build time
    assert "http" not in text.split("AS worker")[1].split("AS bot")[0].replace(
        "https://download.pytorch.org/whl/cpu", ""
    )
