#!/usr/bin/env bash
# A deployer's install, checked from the project's own files: build the wheel, install it into a fresh
# venv with no extras (torch==2.13.0 first, so nothing pulls a CUDA build), ingest the bundled sample
# articles and ask one question; the answer must quote and cite a sample article. A fresh model cache
# too, so the embedding model's export runs with the runtime dependencies alone. Prints each step's time.
#
#   deploy/check-install.sh            # .ci/run runs it after the tests
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False
export NEWSBOT_MODEL_CACHE="$work/models"
unset NEWSBOT_DATA_DIR NEWSBOT_ARTICLES_DIR

timed() {  # timed LABEL COMMAND...: run it, print how long it took
    local label="$1" started
    shift
    started=$EPOCHREALTIME
    "$@"
    awk -v label="$label" -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "check-install: %-30s %6.1f s\n", label, b - a }' >&2

}

# The tracked files only, as a fresh clone has them (edits included, untracked files not).
mkdir "$work/src"
git ls-files -z | xargs -0 cp --parents -t "$work/src"
timed "fresh venv" "$python" -m venv "$work/venv"
pip=("$work/venv/bin/pip" --quiet --disable-pip-version-check)
timed "build the wheel" "${pip[@]}" wheel --no-deps --wheel-dir "$work/dist" "$work/src"
timed "install torch==2.13.0" "${pip[@]}" install torch==2.13.0
timed "install the wheel (no extras)" "${pip[@]}" install "$work"/dist/newsbot-*.whl

cd "$work"  # away from the source tree: only the installed package can be imported
newsbot="$work/venv/bin/newsbot"
timed "newsbot ingest (samples)" "$newsbot" --data-dir "$work/var" ingest
question="How many additional troops did Ash Carter announce for Iraq in July 2016?"
timed "newsbot ask" "$newsbot" --data-dir "$work/var" ask --json "$question" > "$work/answer.json"
"$work/venv/bin/python" - "$work/answer.json" <<'PY'
import json, sys

answer = json.load(open(sys.argv[1]))
cited = answer["citations"]
assert not answer["refused"] and cited, f"no cited answer: {answer['answer']!r}"
assert all(c["quote"] and f"[{c['n']}]" in answer["answer"] for c in cited), f"a source is not quoted and marked: {answer!r}"
assert "samples" in cited[0]["path"], f"not a bundled sample article: {cited[0]['path']}"
print(f"check-install: answer: {answer['answer']}")
for c in cited:
    details = ", ".join(part for part in (c["source"], c["published"]) if part)
    print(f"check-install: [{c['n']}] {c['title']}" + (f" ({details})" if details else ""))
PY
extras=$("$work/venv/bin/pip" list --format=freeze 2>/dev/null | grep -i -E '^(langchain|langchain-openai|pytest|xllamacpp|deptry)=' || true)
[ -z "$extras" ] || { echo "check-install: an extra's package was installed: $extras" >&2; exit 1; }
echo "check-install: ok"
