# newsbot: the Telegram bot in a Python venv on a slim Debian image, with the CPU-only build of torch,
# running as the unprivileged user newsbot (uid 10001), which owns every path the bot writes: /data
# (articles, uploads, the embedded index, the heartbeat) and the exported model in /opt/newsbot/models.
# By default the index is an embedded Chroma in /data; docker-compose.yml runs it against a Chroma server.
#
#   docker build -t newsbot .
#   docker run -e TELEGRAM_BOT_TOKEN=... -v newsbot-data:/data newsbot
#
# Build arguments:
#   BASE_IMAGE       any image with Python 3.11 and its venv module (default python:3.11-slim;
#                    deploy/try_compose.py builds on a Debian bookworm made with debootstrap)
#   TORCH_INDEX_URL  where torch==2.13.0's CPU wheel comes from (default PyTorch's CPU index: the PyPI
#                    wheel pulls the CUDA libraries, gigabytes this image never uses); empty: pip's own
#                    settings decide (a mirror, a wheel folder)
ARG BASE_IMAGE=python:3.11-slim

# The wheel, built from the project's files (.dockerignore keeps out the rest).
FROM ${BASE_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src
RUN python3 -m venv /opt/build && /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels /src

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/newsbot/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    NEWSBOT_DATA_DIR=/data \
    NEWSBOT_ARTICLES_DIR=/data/articles \
    NEWSBOT_MODEL_CACHE=/opt/newsbot/models \
    TELEGRAM_BOT_TOKEN_FILE=/run/secrets/telegram_bot_token

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin newsbot \
    && install -d -o newsbot -g newsbot -m 0755 /data /data/articles

# torch (pinned, 2.13.0) comes first, from the CPU-only wheels, so that nothing pulls a CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python3 -m venv /opt/newsbot \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
           pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
       else \
           pip install torch==2.13.0; \
       fi
# Then the project's wheel with its runtime dependencies only (no extras), as `pip install newsbot` does.
COPY --from=wheel /wheels /tmp/wheels
RUN pip install /tmp/wheels/newsbot-*.whl \
    && rm -rf /tmp/wheels \
    && install -d -o newsbot -g newsbot -m 0755 /opt/newsbot/models
COPY deploy/entrypoint.sh /usr/local/bin/newsbot-entrypoint

USER newsbot
# The embedding model is exported to ONNX once, here, by the user that runs the bot, so the container
# starts without doing it and can redo it (a newer export format) in a folder it owns.
RUN python -c "from retrieval.index.embedding import OnnxEmbedder; OnnxEmbedder(cache_dir='/opt/newsbot/models').embed_documents(['warm-up'])"

WORKDIR /data
VOLUME /data
# The webhook server (`newsbot serve --webhook URL --listen 0.0.0.0:8443`); long polling needs no port.
# And an answer worker service (`newsbot worker --listen 0.0.0.0:8500`, docker-compose.yml).
EXPOSE 8443 8500
# Ready while the bot's heartbeat (written every 30 s by the running bot) is fresh, its index answers and
# holds chunks (`--live`: only that the bot runs). The first start ingests first, hence the start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-m", "bot.health", "--max-age", "90"]
# Articles (and uploads from admins) and, in embedded mode, the index live on the volume. The entry point
# seeds an empty articles folder with the bundled samples and, before `newsbot serve`, ingests what changed
# (deploy/entrypoint.sh); a failed ingest stops the container.
ENTRYPOINT ["newsbot-entrypoint"]
CMD ["newsbot", "serve"]
