# syntax=docker/dockerfile:1
# Two images from one file and one package: `--target worker` (torch, the model) and
# `--target bot` (no torch). Both copy the same three package folders and install them with
# an extra that picks the dependencies; nothing lists single files.
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 moodring
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
# Empty packages so the dependency layer can be built (and cached) before the source arrives.
RUN mkdir -p bot inference recommender && touch bot/__init__.py inference/__init__.py recommender/__init__.py

# ---- worker: dependencies first (cached), then the package and its committed weights ----
FROM base AS worker
# CPU wheels of the pinned torch/torchvision; everything else from PyPI, pinned by constraints.txt.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -c constraints.txt '.[worker]' \
 && pip install --no-deps -c constraints.txt facenet-pytorch \
 && pip uninstall -y moodring
COPY bot ./bot
COPY inference ./inference
COPY recommender ./recommender
RUN pip install --no-deps . && python -c "from inference.serve.checkpoint import load_model; load_model()"
USER moodring
ENV MOODRING_TORCH_THREADS=2
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s CMD ["moodring", "worker", "--check"]
CMD ["moodring", "worker"]

# ---- bot: the same package, the bot's extra, no torch ----
FROM base AS bot
RUN pip install -c constraints.txt '.[bot]' && pip uninstall -y moodring
COPY bot ./bot
COPY inference ./inference
COPY recommender ./recommender
RUN pip install --no-deps . && python -c "import bot.__main__, bot.app, sys; assert 'torch' not in sys.modules"
USER moodring
CMD ["moodring", "bot"]
