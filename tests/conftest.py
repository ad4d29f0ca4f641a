"""Shared fixtures: a private redis-server, tiny models, synthetic photos."""

from __future__ import annotations

import asyncio
import io
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from redis.asyncio import Redis

from tests.fakemusic import Fakes, FakeSpotify, start_fakes, start_spotify


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randrange(20_000, 30_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def spawn_redis(
    *args: str, workdir: Path | str, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a redis-server (extra ``args``) in ``workdir`` on a free port; its process and URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
    port = port or _free_port()
    command = [binary, *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


class Cluster:
    """A Redis Cluster of real ``redis-server --cluster-enabled yes`` nodes, made by ``redis-cli``."""

    def __init__(self, procs: list[subprocess.Popen[bytes]], ports: list[int]) -> None:
        self.procs = procs
        self.ports = ports

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def client(self) -> Redis:
        from inference.api.connect import connect

        return connect(self.url, cluster=True)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def spawn_cluster(workdir: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> Cluster:
    """Start ``masters * (1 + replicas)`` nodes and join them with ``redis-cli --cluster create``."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is not installed (apt-get install -y redis-server)")
    procs, ports = [], []
    for i in range(masters * (1 + replicas)):
        node = Path(workdir) / f"node{i}"
        node.mkdir()
        proc, url = spawn_redis(
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms), "--save", "", "--appendonly", "no",
            workdir=node,
            port=_free_cluster_port(),
        )  # fmt: skip
        procs.append(proc)
        ports.append(int(url.rsplit(":", 1)[1].split("/")[0]))
    cluster = Cluster(procs, ports)
    nodes = [f"127.0.0.1:{p}" for p in ports]
    made = subprocess.run(
        [cli, "--cluster", "create", *nodes, "--cluster-replicas", str(replicas), "--cluster-yes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if made.returncode != 0:
        cluster.stop()
        pytest.fail(f"redis-cli --cluster create failed: {made.stdout[-500:]} {made.stderr[-500:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every node agrees the cluster is up
        states = [
            subprocess.run([cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True).stdout
            for p in ports
        ]
        if all("cluster_state:ok" in s for s in states):
            return cluster
        time.sleep(0.1)
    cluster.stop()
    pytest.fail("the cluster did not come up")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters, no replicas, shared by the tests that run on a cluster."""
    cluster = spawn_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster(redis_cluster: Cluster) -> AsyncIterator[Redis]:
    """A cluster client with every master emptied before and after the test."""
    r = redis_cluster.client()
    await r.flushall()
    yield r
    await r.flushall()
    await r.aclose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a throw-away redis-server on a free port; yield its URL."""
    workdir = tmp_path_factory.mktemp("redis")
    proc, url = spawn_redis("--save", "", "--appendonly", "no", workdir=workdir)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    """A client on the private server with an empty database before and after the test."""
    r = Redis.from_url(redis_server)
    await r.flushdb()
    yield r
    await r.flushdb()
    await r.aclose()


def face_photo(size: tuple[int, int] = (400, 300), fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """A synthetic picture (not a real face) encoded in ``fmt``."""
    im = Image.new("RGB", size, (200, 180, 160))
    d = ImageDraw.Draw(im)
    w, h = size
    d.ellipse((w * 0.3, h * 0.2, w * 0.7, h * 0.8), fill=(230, 200, 180))
    d.ellipse((w * 0.4, h * 0.4, w * 0.45, h * 0.45), fill=(20, 20, 20))
    d.ellipse((w * 0.55, h * 0.4, w * 0.6, h * 0.45), fill=(20, 20, 20))
    d.arc((w * 0.42, h * 0.55, w * 0.58, h * 0.7), 0, 180, fill=(120, 30, 30), width=3)
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def make_tiny_model(out: Path, classes: tuple[str, ...]) -> Path:
    """A randomly initialised FER ResNet50 at 32 px for ``classes``, with a valid manifest, fp16 weights."""
    import torch
    from safetensors.torch import save_file

    from inference.api.manifest import ModelManifest, sha256_file
    from inference.serve.model import STEM_FER, build_resnet50

    torch.manual_seed(0)
    model = build_resnet50(len(classes))
    # zero_init_residual makes every block an identity at init; give the maps some texture.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    weights = out / "model.safetensors"
    save_file(
        {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()},
        str(weights),
    )
    ModelManifest(
        stem=STEM_FER,
        classes=classes,
        input_size=32,
        mean=(0.5,),
        std=(0.25,),
        target_layer="layer3",
        cam_size=4,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
    ).dump(out / "manifest.json")
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 7 FER2013 classes (see :func:`make_tiny_model`)."""
    from inference.training.data import FER2013_CLASSES

    return make_tiny_model(tmp_path_factory.mktemp("model"), FER2013_CLASSES)


async def wait_for_worker(redis: Redis, within_s: float = 60) -> None:
    """Until some worker has beaten (submitters refuse at once while none is alive)."""
    from inference.api.settings import QueueSettings
    from inference.api.transport import open_transport

    queue = open_transport(redis, QueueSettings())
    deadline = time.monotonic() + within_s
    while not await queue.workers_alive(60):
        if time.monotonic() > deadline:
            raise AssertionError("no worker came up")
        await asyncio.sleep(0.02)


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    """The keyless music services (Deezer, iTunes, Odesli) faked on 127.0.0.1."""
    async for fake in start_fakes():
        yield fake


@pytest.fixture
async def spotify() -> AsyncIterator[FakeSpotify]:
    """A fake Spotify (token + search) on 127.0.0.1, for spotipy."""
    async for fake in start_spotify():
        yield fake
