# newsbot: the Telegram bot on a slim Python image with the CPU-only build of torch, running as a
# non-root user. By default the index is an embedded Chroma in /data; docker-compose.yml runs it
# against a Chroma server instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    NEWSBOT_DATA_DIR=/data \
    NEWSBOT_ARTICLES_DIR=/data/articles \
    NEWSBOT_MODEL_CACHE=/app/models

WORKDIR /app
# torch (pinned, 2.13.0) comes first, from PyTorch's CPU-only wheel index: the default PyPI wheel
# pulls in the CUDA libraries, gigabytes this image never uses. Another index (a mirror):
#   docker build --build-arg TORCH_INDEX_URL=<cpu wheel index> .
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
COPY pyproject.toml README.md ./
COPY bot bot
COPY config config
COPY newsbot newsbot
COPY prompts prompts
COPY retrieval retrieval
# The embedding model is exported to int8 ONNX once, here, so the container starts without doing it.
RUN pip install -e . \
    && python -c "from retrieval.index.embedding import OnnxEmbedder; OnnxEmbedder(cache_dir='/app/models').embed(['warm-up'])" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin newsbot \
    && mkdir -p /data \
    && chown newsbot:newsbot /data

USER newsbot
VOLUME /data
# Healthy while the bot's heartbeat (written every 30 s by the running bot) is fresh and its index
# answers; the first model load and ingest can take a while, hence the start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-m", "bot.health", "--max-age", "90"]
# Articles (with uploads from admins) and, in embedded mode, the index live on the volume. The first
# start seeds it with the bundled sample articles; every start indexes what changed, then serves.
CMD ["sh", "-c", "mkdir -p \"$NEWSBOT_ARTICLES_DIR\" && { [ -n \"$(ls -A \"$NEWSBOT_ARTICLES_DIR\")\" ] || cp -r /app/retrieval/ingest/samples/*.txt \"$NEWSBOT_ARTICLES_DIR\"; } && newsbot ingest; exec newsbot serve"]
