"""The answer worker service's health check (`python -m retrieval.remote.check`, the compose health check).

Asks the worker's `/health` on this machine and exits 0 when it says ready (its models and index are
loaded and the index answers), 1 when not, printing why. Only the standard library: a check every few
seconds costs little.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def check(url: str, timeout: float) -> tuple[bool, str]:
    """Ready or not, and why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            status = json.loads(exc.read())
        except ValueError:
            return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url} cannot be reached: {exc}"
    if not status.get("ready"):
        return False, f"not ready: {status.get('problem') or 'unknown'}"
    return True, f"ready: {status.get('chunks')} chunks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrieval.remote.check", description="Is the answer worker ready?")
    parser.add_argument("--port", type=int, default=8500, help="the port `newsbot worker --listen` was given (default: 8500)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    args = parser.parse_args(argv)
    ready, reason = check(f"http://127.0.0.1:{args.port}/health", args.timeout)
    print(reason)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
