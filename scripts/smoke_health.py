"""Smoke test after a deploy: GET /health on each function, standard library only.

    python3 scripts/smoke_health.py classify=https://... regress=https://...

Each NAME=URL is called with `Authorization: Bearer $<NAME>_ID_TOKEN` when that
variable is set (private functions: a Google ID token for that URL). Passes when
every function answers 200 (a model is served), or 503 with the app's own health
body ({"status": "unavailable", ...}), which is what a fresh deploy answers until the
first `make publish`. Anything else fails, including a 503 from the platform (an
instance that cannot start) rather than from the app. Exit status 0 or 1.

Freshly deployed instances cold-start, so connection errors, 429, 502 and 504
are retried (--attempts, --delay seconds between tries, doubling).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

RETRIED = {429, 502, 504}


def check(name: str, url: str, token: str | None, attempts: int, delay: float, timeout: float) -> bool:
    request = urllib.request.Request(url.rstrip("/") + "/health", method="GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            status, body = None, str(error).encode()
        if (status is None or status in RETRIED) and attempt < attempts:
            print(f"{name}: attempt {attempt} got {status or body.decode()!r}, retrying", file=sys.stderr)
            time.sleep(delay * 2 ** (attempt - 1))
            continue
        break
    text = body.decode("utf-8", "replace")[:500]
    if status == 200:
        print(f"{name}: 200 {text}")
        return True
    if status == 503:
        try:
            app_body = json.loads(body)
        except ValueError:
            app_body = None
        if isinstance(app_body, dict) and app_body.get("status") == "unavailable":
            print(f"{name}: 503 no model published yet (expected before the first make publish)")
            return True
    print(f"{name}: FAILED, {status or 'no answer'}: {text}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", metavar="NAME=URL")
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    ok = True
    for target in args.targets:
        name, sep, url = target.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            parser.error(f"{target!r}: expected NAME=URL, e.g. classify=https://...")
        token = os.environ.get(f"{name.upper()}_ID_TOKEN") or None
        ok = check(name, url, token, args.attempts, args.delay, args.timeout) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
