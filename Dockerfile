# newsbot: the bot with the embedded defaults (Chroma on disk in /data, the bundled model).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    NEWSBOT_DATA_DIR=/data

WORKDIR /app
# torch is pinned (2.13.0) and installed first. To get the small CPU-only build, pass your CPU wheel
# index: docker build --build-arg PIP_EXTRA_INDEX_URL=<cpu wheel index> .
ARG PIP_EXTRA_INDEX_URL=
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY bot bot
COPY config config
COPY newsbot newsbot
COPY prompts prompts
COPY retrieval retrieval
COPY data data
RUN pip install -e .

VOLUME /data
# Index the bundled articles at start if the index is empty, then serve.
CMD ["sh", "-c", "newsbot ingest && exec newsbot serve"]
