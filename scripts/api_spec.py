"""Write shared/velocast/serving/static/openapi.json from openapi.yaml (`make api-spec`): the
functions serve the JSON so they need no YAML parser. `--check` exits 1 when stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "openapi.yaml"
TARGET = ROOT / "shared" / "velocast" / "serving" / "static" / "openapi.json"


def rendered() -> str:
    return json.dumps(yaml.safe_load(SOURCE.read_text(encoding="utf-8")), ensure_ascii=False,
                      separators=(",", ":"), sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = rendered()
    if "--check" in argv:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `make api-spec`", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
