# newsbot: the bot with the embedded defaults (Chroma on disk in /data, the bundled model).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    NEWSBOT_DATA_DIR=/data \
    NEWSBOT_ARTICLES_DIR=/data/articles

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
RUN pip install -e .

VOLUME /data
# Articles (with uploads from admins) and the index live on the volume. The first start seeds it
# with the bundled sample articles; every start indexes what changed, then serves.
CMD ["sh", "-c", "mkdir -p \"$NEWSBOT_ARTICLES_DIR\" && { [ -n \"$(ls -A \"$NEWSBOT_ARTICLES_DIR\")\" ] || cp -r /app/retrieval/ingest/samples/*.txt \"$NEWSBOT_ARTICLES_DIR\"; } && newsbot ingest; exec newsbot serve"]
