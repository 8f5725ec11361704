#!/usr/bin/env bash
# Build the newsbot image with podman, reaching the package registries only as this machine does:
# its network (--network=host), its pip settings and CA bundle, mounted read-only for the build's RUN
# steps and never copied into the image.
#
#   deploy/build-image.sh [TAG]                          # default tag: localhost/newsbot:latest
#   BASE_IMAGE=localhost/bookworm-python:12 TORCH_INDEX_URL= deploy/build-image.sh
#
# BASE_IMAGE and TORCH_INDEX_URL are the Dockerfile's build arguments (unset: the Dockerfile's defaults;
# TORCH_INDEX_URL set but empty: pip's own settings find torch). Mounted when they exist: /etc/pip.conf,
# /etc/xdg/pip, ~/.config/pip, ~/.pip, each folder or file:// index those settings name, and the CA
# bundle pip is told to trust (PIP_CERT, else SSL_CERT_FILE, else Debian's).
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/newsbot:latest}"

args=(build --network=host --format docker --tag "$tag")  # docker format: OCI images drop HEALTHCHECK
[ -n "${BASE_IMAGE+x}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${TORCH_INDEX_URL+x}" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

mount() {  # mount $1 read-only at $2 (default: the same path), once
    local target="${2:-$1}"
    [ -e "$1" ] || return 0
    case " ${args[*]} " in *" $1:$target:ro "*) return 0 ;; esac
    args+=(-v "$1:$target:ro")
}
for config in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip"; do
    # The build runs pip as root: a user's settings go where root's pip reads them.
    case "$config" in "$HOME"/*) mount "$config" "/root/${config#"$HOME"/}" ;; *) mount "$config" ;; esac
done
# What the settings point at: find-links folders, file:// indexes (with the folder beside "simple"
# that their links lead to), constraint files. The CA bundle is mounted where Debian keeps its own.
bundle="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
mount "$bundle" /etc/ssl/certs/ca-certificates.crt
if command -v pip >/dev/null; then
    while read -r value; do
        for word in $value; do
            path="${word#file://}"
            path="${path%/}"
            case "$path" in
                "$bundle") ;;
                */simple) [ -d "$path" ] && mount "$(dirname "$path")" ;;
                /*) mount "$path" ;;
            esac
        done
    done < <(pip config list 2>/dev/null | sed -n "s/^[^=]*='\(.*\)'$/\1/p")
fi

echo "podman ${args[*]} ." >&2
started=$(date +%s)
podman "${args[@]}" .
echo "built $tag in $(( $(date +%s) - started )) s; $(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}')" >&2
