# syntax=docker/dockerfile:1
# Two images from one file: `--target worker` (torch, the model) and `--target bot` (no torch).
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 moodring
WORKDIR /app

# ---- worker: dependencies first (cached), then source and the committed weights ----
FROM base AS worker
COPY constraints.txt pyproject.toml README.md ./
# CPU wheels of the pinned torch/torchvision; everything else from PyPI, pinned by constraints.txt.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && mkdir -p bot inference recommender && touch bot/__init__.py inference/__init__.py recommender/__init__.py \
 && pip install -c constraints.txt '.[worker]' \
 && pip install --no-deps -c constraints.txt facenet-pytorch \
 && pip uninstall -y moodring
COPY bot ./bot
COPY inference ./inference
COPY recommender ./recommender
RUN pip install --no-deps . && python -c "from inference.checkpoint import load_model; load_model()"
USER moodring
ENV MOODRING_TORCH_THREADS=2
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s CMD ["moodring", "worker", "--check"]
CMD ["moodring", "worker"]

# ---- bot: no torch in this image ----
FROM base AS bot
COPY constraints.txt pyproject.toml README.md ./
RUN mkdir -p bot inference recommender && touch bot/__init__.py inference/__init__.py recommender/__init__.py \
 && pip install -c constraints.txt '.[bot]' && pip uninstall -y moodring
COPY bot ./bot
COPY inference/__init__.py inference/errors.py inference/emotions.py inference/config.py inference/contract.py inference/logsetup.py inference/cli.py ./inference/
COPY recommender ./recommender
RUN pip install --no-deps . && python -c "import bot.app, sys; assert 'torch' not in sys.modules"
USER moodring
CMD ["moodring", "bot"]
