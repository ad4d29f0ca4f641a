"""``moodring adapt``: the community adapter's operator commands, and the refit the worker schedules.

* ``moodring adapt fit``: fit from the deployment's labelled readings in Redis (one fitter at a
  time, by a lock), store the version with its validation, activate it only if the guard says so.
  ``--from DIR --detect --out FILE`` fits from a folder of labelled photos into a file instead.
* ``moodring adapt show`` / ``rollback``: the active version, its figures; the one before it.
* ``moodring adapt projection``: the fixed feature projection shipped with the model (FER2013
  Training only), written beside the weights with its sha256 in the manifest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
from redis.asyncio import Redis

from inference.api.community import AdapterRegistry, Contribution, decode_features, read_contributions
from inference.cli_options import EXISTING_DIR, OUT_FILE, model_dir_option, train_option
from inference.serve.adapter import AdapterFile
from inference.training.adapt import Feedback, Policy
from inference.training.adapt_judge import fit_and_judge

log = logging.getLogger(__name__)


def feedback_from(contributions: Sequence[Contribution], classes: Sequence[str], dims: int) -> Feedback:
    """The contributors' labelled readings as arrays (a record without features of ``dims`` numbers
    is left out when the model has a projection)."""
    index = {c: i for i, c in enumerate(classes)}
    probs, feats, labels, people, kinds = [], [], [], [], []
    shown, asked = {}, {}
    for person in contributions:
        shown[person.user_hash], asked[person.user_hash] = person.shown, person.asked
        for rec in person.records:
            got = decode_features(rec.features, dims) if dims else ()
            if got is None or (rec.label is not None and rec.label not in index):
                continue
            row = np.array([float(rec.probs.get(c, 0.0)) for c in classes])
            probs.append(row / row.sum() if row.sum() > 0 else np.full(len(classes), 1 / len(classes)))
            feats.append(np.array(got, dtype=np.float32))
            labels.append(-1 if rec.label is None else index[rec.label])
            people.append(person.user_hash)
            kinds.append(rec.kind)
    n = len(labels)
    return Feedback(
        np.array(probs, dtype=np.float64).reshape(n, len(classes)),
        np.array(feats, dtype=np.float32).reshape(n, dims),
        np.array(labels, dtype=np.int64),
        np.array(people, dtype=object),
        np.array(kinds, dtype=object),
        shown,
        asked,
    )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a fit needs of the served model: its classes and its projection."""

    classes: tuple[str, ...]
    dims: int
    projection_sha256: str


def model_info(model_dir: Path | None) -> ModelInfo:
    from inference.api.manifest import MANIFEST_FILE, ModelManifest, default_model_dir
    from inference.serve.projection import load_projection

    manifest = ModelManifest.load((model_dir or default_model_dir()) / MANIFEST_FILE)
    projection = load_projection(model_dir, manifest)
    dims = projection.dims if projection is not None else 0
    return ModelInfo(tuple(manifest.classes), dims, projection.sha256 if projection is not None else "")


@dataclass(frozen=True, slots=True)
class Refit:
    """What a refit did: the stored record (None when nothing was fitted) and why."""

    record: AdapterFile | None
    message: str


async def refit(
    redis: Redis, info: ModelInfo, policy: Policy | None = None, owner: str | None = None
) -> Refit:
    """Fit from every current contributor's labels, store the version, activate it if the guard
    agrees. One fitter at a time (a Redis lock); a refit after contributors withdrew that can't be
    activated switches the adapter off, since the active one still holds what they gave."""
    registry = AdapterRegistry(redis)
    policy = policy or Policy()
    owner = owner or f"{socket.gethostname()}-{id(redis):x}"
    if not await registry.lock(owner):
        return Refit(None, "another fit is running (lock held)")
    try:
        withdrawn = await registry.withdrawn()
        contributions = await read_contributions(redis)
        fb = feedback_from(contributions, info.classes, info.dims)
        if not (fb.labels >= 0).any():
            await registry.touch()
            await _withdrawn_handled(registry, withdrawn, activated=False)
            return Refit(None, f"no labelled readings yet ({len(contributions)} contributors)")
        version = await registry.next_version()
        _, record = await asyncio.to_thread(
            fit_and_judge,
            fb,
            info.classes,
            policy,
            version=version,
            source="redis",
            projection_sha256=info.projection_sha256,
        )
        await registry.save(version, record.model_dump_json(), activate=record.activated)
        await _withdrawn_handled(registry, withdrawn, activated=record.activated)
        state = "activated" if record.activated else "not activated"
        log.info(
            "adapter %s fitted from %d readings of %d people: %s (%s)",
            version,
            record.readings,
            record.people,
            state,
            record.reason,
        )
        return Refit(record, f"{version} {state}: {record.reason}")
    finally:
        await registry.unlock(owner)


async def _withdrawn_handled(registry: AdapterRegistry, withdrawn: int, activated: bool) -> None:
    if withdrawn and not activated and await registry.active_version():
        await registry.deactivate("contributors withdrew and the refit without them was not activated")
        log.info(
            "adapter switched off: %d contributor(s) withdrew and the refit was not activated", withdrawn
        )
    if withdrawn:
        await registry.clear_withdrawn(withdrawn)


def describe(record: dict[str, Any]) -> str:
    """A few lines about one stored adapter version."""
    v = record.get("validation", {})
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.get("fitted_at", 0)))
    head = "probabilities + projected features" if record.get("head") else "probabilities only"
    if record.get("source") == "redis":
        verdict = "activated" if record.get("activated") else "not activated"
    else:  # a file is never activated in Redis: say what the guard would do
        verdict = "the guard would activate it" if record.get("activated") else "the guard would refuse it"
    lines = [
        f"{record['version']}: fitted {when} from {record.get('readings', 0)} readings of "
        f"{record.get('people', 0)} people ({record.get('source', '')}; {head})",
        f"  {verdict}: {record.get('reason', '')}",
    ]
    if v:
        lines.append(
            f"  validation ({v.get('method', '')}): {v.get('scored', 0)} answers, accuracy "
            f"{100 * v.get('accuracy_without', 0):.1f} % without → "
            f"{100 * v.get('accuracy_with', 0):.1f} % with"
        )
    return "\n".join(lines)


def _policy(min_people: int | None, margin: float | None) -> Policy:
    policy = Policy()
    if min_people is not None:
        policy = replace(policy, min_people=min_people)
    if margin is not None:
        policy = replace(policy, margin=margin)
    return policy


@click.group("adapt")
def adapt_group() -> None:
    """Community calibration: an adapter learnt from users' confirmed and corrected readings."""


@adapt_group.command("fit")
@click.option(
    "--from",
    "folder",
    type=EXISTING_DIR,
    default=None,
    help="Fit from a folder of labelled photos (ImageFolder) instead of the users' readings in Redis.",
)
@click.option("--detect", is_flag=True, help="With --from: the folder holds whole photos (detect → crop).")
@click.option(
    "--out",
    type=OUT_FILE,
    default=None,
    help="With --from: write the adapter here (JSON); it is never activated in Redis.",
)
@click.option(
    "--people-by",
    default=None,
    metavar="COLUMN",
    help="With --from: DIR/labels.csv's column naming who is in each photo (validation leaves people "
    "out); default: every photo its own person.",
)
@click.option("--min-people", type=click.IntRange(1), default=None, help="Guard: fewest contributors (20).")
@click.option("--margin", type=float, default=None, help="Guard: points a fit must win by (1.0).")
@model_dir_option
def fit_command(
    folder: Path | None,
    detect: bool,
    out: Path | None,
    people_by: str | None,
    min_people: int | None,
    margin: float | None,
    model_dir: Path | None,
) -> None:
    """Fit the adapter; from Redis it is activated only if it beats no adapter (leaving people out)."""
    policy = _policy(min_people, margin)
    if folder is not None:
        if out is None:
            raise click.UsageError("--from needs --out FILE")
        if people_by is None:
            click.echo(
                "note: without --people-by every photo counts as its own person, so the validation "
                "leaves photos (not people) out: optimistic where one person is in several photos"
            )
        record = _fit_folder(folder, detect, people_by, policy, model_dir)
        out.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
        click.echo(describe(record.model_dump()))
        click.echo(f"wrote {out}")
        return
    if out is not None or detect or people_by:
        raise click.UsageError("--out, --detect and --people-by go with --from DIR")
    result = asyncio.run(_fit_redis(policy, model_dir))
    click.echo(describe(result.record.model_dump()) if result.record else result.message)


def _fit_folder(
    folder: Path, detect: bool, people_by: str | None, policy: Policy, model_dir: Path | None
) -> AdapterFile:
    from inference.serve.checkpoint import load_model
    from inference.serve.faces import build_detector
    from inference.serve.model import fold_batchnorm
    from inference.serve.precision import resolve_bf16
    from inference.serve.projection import load_projection
    from inference.serve.settings import engine_settings
    from inference.training.photos import read_groups
    from inference.training.readings import photo_readings

    if not detect:
        raise click.UsageError("--from needs --detect (fits are made on whole photos, as users send them)")
    settings = engine_settings(model_dir)
    model, manifest = load_model(settings.model_dir)
    model = fold_batchnorm(model.eval())
    projection = load_projection(settings.model_dir, manifest)
    bf16 = resolve_bf16(settings.bf16)
    got = photo_readings(
        model, manifest, folder, build_detector(settings.face_detector), projection, bf16=bf16
    )
    groups = read_groups(folder, people_by) if people_by else {}
    keep = got.has_face
    people = np.array([groups.get(p, p) for p in got.paths], dtype=object)
    fb = Feedback(
        got.probs[keep].astype(np.float64),
        got.features[keep],
        got.labels[keep].astype(np.int64),
        people[keep],
        np.array(["given"] * int(keep.sum()), dtype=object),
    )
    classes = tuple(str(c) for c in manifest.classes)
    _, record = fit_and_judge(
        fb,
        classes,
        policy,
        version=f"file-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        source=str(folder),
        projection_sha256=projection.sha256 if projection is not None else "",
    )
    return record


async def _fit_redis(policy: Policy, model_dir: Path | None) -> Refit:
    from inference.api.connect import connect
    from inference.api.settings import QueueSettings, load_settings

    settings = load_settings(QueueSettings, **({"model_dir": model_dir} if model_dir else {}))
    redis = connect(settings.redis_url, settings.redis_cluster)
    try:
        return await refit(redis, model_info(settings.model_dir), policy)
    finally:
        await redis.aclose()


@adapt_group.command("show")
@click.option("--all", "show_all", is_flag=True, help="Every stored version, newest first.")
def show_command(show_all: bool) -> None:
    """The active adapter: version, when, from how many readings and people, its validation."""
    click.echo(asyncio.run(_show(show_all)))


async def _show(show_all: bool) -> str:
    async with _registry() as registry:
        versions = await registry.versions()
        active = await registry.active_version()
        last = await registry.last_fit()
    lines = [f"active: {active or 'none (readings are the model own)'}"]
    if last:
        lines.append(f"last fit: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(last))}")
    chosen = sorted(versions.values(), key=lambda r: r.get("fitted_at", 0), reverse=True)
    if not show_all:
        chosen = [r for r in chosen if r["version"] == active][:1] + [
            r for r in chosen[:1] if r["version"] != active
        ]
    lines += [describe(r) for r in chosen]
    return "\n".join(lines)


@adapt_group.command("rollback")
def rollback_command() -> None:
    """Go back to the adapter active before this one (or to none); workers follow within seconds."""

    async def run() -> str | None:
        async with _registry() as registry:
            return await registry.rollback()

    now = asyncio.run(run())
    click.echo(f"active: {now or 'none'}")


class _registry:
    """``async with _registry() as r``: an AdapterRegistry on the configured Redis."""

    async def __aenter__(self) -> AdapterRegistry:
        from inference.api.connect import connect
        from inference.api.settings import QueueSettings, load_settings

        settings = load_settings(QueueSettings)
        self.redis = connect(settings.redis_url, settings.redis_cluster)
        return AdapterRegistry(self.redis)

    async def __aexit__(self, *exc: object) -> None:
        await self.redis.aclose()


@adapt_group.command("projection")
@train_option("FER2013 Training (faces only: the projection must never see the real-photo dev set).")
@click.option("--dims", type=click.IntRange(1, 128), default=128, show_default=True)
@model_dir_option
def projection_command(data: Path, dims: int, model_dir: Path | None) -> None:
    """Fit the fixed feature projection (PCA of the pooled features) and write it beside the weights."""
    from inference.api.manifest import MANIFEST_FILE, ModelManifest, default_model_dir
    from inference.serve.checkpoint import load_model
    from inference.serve.model import fold_batchnorm
    from inference.serve.precision import resolve_bf16
    from inference.serve.projection import fit_projection
    from inference.serve.settings import engine_settings
    from inference.training.data import load_faces
    from inference.training.readings import predict_with_features

    settings = engine_settings(model_dir)
    where = settings.model_dir or default_model_dir()
    model, manifest = load_model(where)
    model = fold_batchnorm(model.eval())
    faces = load_faces(data, manifest.input_size, tuple(manifest.classes))
    _, feats = predict_with_features(
        model, faces.images, manifest, bf16=resolve_bf16(settings.bf16), progress="features"
    )
    projection = fit_projection(feats, dims)
    name = "projection.safetensors"
    digest = projection.save(where / name)
    updated = manifest.model_copy(update={"projection_file": name, "projection_sha256": digest})
    ModelManifest.model_validate(updated.model_dump()).dump(where / MANIFEST_FILE)
    click.echo(json.dumps({"faces": len(feats), "dims": dims, "file": str(where / name), "sha256": digest}))
