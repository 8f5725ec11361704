#!/bin/sh
# The container's entry point. Seeds an empty articles folder with the bundled sample articles, then,
# before `newsbot serve` (unless NEWSBOT_INGEST_ON_START=0), indexes the articles folder: what changed
# since the last start only. A failed ingest stops the container with one line and ingest's exit
# status; files it skipped (reported above it) do not. `newsbot worker` and any other command run as given.
set -eu

# An answer worker service reads the index from the Chroma server: no articles of its own to seed or ingest.
if [ "${1:-}" = newsbot ] && [ "${2:-}" = worker ]; then
    exec "$@"
fi

articles="${NEWSBOT_ARTICLES_DIR:-/data/articles}"
if [ -z "$(ls -A "$articles" 2>/dev/null)" ]; then
    # Nothing there yet (a new volume): the samples, so that the bot answers something from the start.
    if ! mkdir -p "$articles" 2>/dev/null || [ ! -w "$articles" ]; then
        echo "newsbot-entrypoint: cannot write to $articles as user $(id -u):$(id -g); mount a volume this user owns (the image's user is newsbot, uid 10001)" >&2
        exit 1
    fi
    samples="$(python -c 'import pathlib, retrieval.ingest as m; print(pathlib.Path(m.__file__).parent / "samples")')"
    cp "$samples"/*.txt "$articles"/
    echo "newsbot-entrypoint: $articles was empty; copied the $(ls "$samples"/*.txt | wc -l) bundled sample articles into it" >&2
fi

if [ "${1:-}" = newsbot ] && [ "${2:-}" = serve ] && [ "${NEWSBOT_INGEST_ON_START:-1}" != 0 ]; then
    status=0
    summary="$(newsbot ingest "$articles")" || status=$?
    [ -n "$summary" ] && echo "$summary"
    case "$status:$summary" in
        0:*) ;;
        1:ingest:*) echo "newsbot-entrypoint: some files were skipped (listed above); serving the rest" >&2 ;;
        *)
            echo "newsbot-entrypoint: ingest of $articles failed (exit $status, reason above); the bot is not started" >&2
            exit "$status"
            ;;
    esac
fi
exec "$@"
