"""`GET /docs` and `GET /openapi.json`: the API contract, readable in a browser with no
CDN and no script, from the spec that ships in the bundle.

`static/openapi.json` is generated from the repository's `openapi.yaml` by
`make api-spec` (a test fails when the two differ), so serving needs no YAML parser.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

SPEC_PATH = Path(__file__).with_name("static") / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete", "options", "head")

_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
h1{margin-bottom:.2rem}code,pre{font:13px ui-monospace,monospace;background:#f3f4f6;border-radius:4px}
pre{padding:.6rem;overflow:auto;white-space:pre-wrap}code{padding:0 .2rem}
section.op{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.2rem 1rem}
.m{display:inline-block;min-width:3.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0969da}.post{color:#1a7f37}table{border-collapse:collapse;width:100%}
td,th{border-top:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}"""


@functools.lru_cache(maxsize=1)
def spec_bytes() -> bytes:
    return SPEC_PATH.read_bytes()


def _text(value) -> str:
    return html.escape(str(value or ""))


def _ref_name(schema: dict) -> str:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else schema.get("type", "")


def _schema_table(schema: dict) -> str:
    rows = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        kind = _ref_name(prop) or ("array of " + _ref_name(prop.get("items", {}))
                                   if prop.get("type") == "array" else "")
        rows.append(f"<tr><td><code>{_text(name)}</code>{' *' if name in required else ''}</td>"
                    f"<td>{_text(kind)}</td><td>{_text(prop.get('description'))}</td></tr>")
    if not rows:
        return ""
    return "<table><tr><th>field</th><th>type</th><th>meaning</th></tr>" + "".join(rows) + "</table>"


def _operation(path: str, method: str, op: dict) -> str:
    parts = [f'<section class="op" id="{_text(method + path)}"><h3><span class="m {method}">'
             f"{method}</span> <code>{_text(path)}</code> {_text(op.get('summary'))}</h3>"]
    if op.get("description"):
        parts.append(f"<pre>{_text(op['description'])}</pre>")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        parts.append(f"<p>Body <code>{_text(media)}</code>: "
                     f"<code>{_text(_ref_name(content.get('schema', {})))}</code></p>")
    rows = "".join(f"<tr><td>{_text(status)}</td><td>{_text(resp.get('description'))}</td></tr>"
                   for status, resp in op.get("responses", {}).items())
    parts.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table></section>")
    return "".join(parts)


@functools.lru_cache(maxsize=1)
def page() -> bytes:
    spec = json.loads(spec_bytes())
    info = spec.get("info", {})
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>{_text(info.get('title'))}"
             f" API</title><meta name=viewport content='width=device-width'><style>{_STYLE}</style>"
             f"<h1>{_text(info.get('title'))} API <small>{_text(info.get('version'))}</small></h1>"
             f"<p><a href='openapi.json'>openapi.json</a> (OpenAPI {_text(spec.get('openapi'))})</p>"
             f"<pre>{_text(info.get('description'))}</pre><h2>Routes</h2>"]
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                parts.append(_operation(path, method, item[method]))
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        parts.append(f"<h3 id='{_text(name)}'>{_text(name)}</h3><p>{_text(schema.get('description'))}"
                     f"</p>{_schema_table(schema)}")
    return "".join(parts).encode("utf-8")
