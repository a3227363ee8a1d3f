"""`GET /docs` and `GET /openapi.json`: the API contract, readable in a browser with no
CDN and no script, from the spec that ships in the bundle: descriptions rendered from
their Markdown, an example request per route, a link to the forecast page.

`static/openapi.json` is generated from the repository's `openapi.yaml` by
`make api-spec` (a test fails when the two differ), so serving needs no YAML parser.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
from pathlib import Path

SPEC_PATH = Path(__file__).with_name("static") / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete", "options", "head")

_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
h1{margin-bottom:.2rem}code,pre{font:13px ui-monospace,monospace;background:#f3f4f6;border-radius:4px}
pre{padding:.6rem;overflow:auto;white-space:pre-wrap}code{padding:0 .2rem}
section.op{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.2rem 1rem}
.m{display:inline-block;min-width:3.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0969da}.post{color:#1a7f37}table{border-collapse:collapse;width:100%}
td,th{border-top:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
nav{margin:1rem 0}nav a{margin-right:1rem}p.ex{margin-bottom:0}"""
# No script at all, the one inline stylesheet by its hash: nothing else can run or load.
POLICY = ("default-src 'none'; style-src 'sha256-"
          + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
          + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_CODE = re.compile(r"`([^`]+)`")
_EM = re.compile(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])")


@functools.lru_cache(maxsize=1)
def spec_bytes() -> bytes:
    return SPEC_PATH.read_bytes()


def _text(value) -> str:
    return html.escape(str(value or ""))


def markdown(text) -> str:
    """The Markdown subset the spec's descriptions use (paragraphs, `code`, *emphasis*),
    as CommonMark renders it (a test compares with markdown-it on every description):
    a Markdown library in the bundle for three constructs would cost more than this."""
    out = []
    for block in re.split(r"\n\s*\n", str(text or "").strip()):
        if not block.strip():
            continue
        inline = " ".join(line.strip() for line in block.splitlines())
        inline = html.escape(inline, quote=False).replace('"', "&quot;")
        inline = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", inline)
        out.append("<p>" + _EM.sub(r"<em>\1</em>", inline) + "</p>")
    return "".join(out)


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
                    f"<td>{_text(kind)}</td><td>{markdown(prop.get('description'))}</td></tr>")
    if not rows:
        return ""
    return "<table><tr><th>field</th><th>type</th><th>meaning</th></tr>" + "".join(rows) + "</table>"


def example(spec: dict, path: str, method: str, op: dict) -> str:
    """A curl command for the route, from the spec's own examples."""
    secured = any(requirement for requirement in op.get("security", spec.get("security", [])))
    parts = ["curl -s"] + ([f"-X {method.upper()}"] if method != "get" else [])
    parts.append(f'"$URL{path.replace("{file}", "forecast.js")}"')
    query = [p for p in (_deref(spec, p) for p in op.get("parameters", [])) if p.get("in") == "query"]
    if query:  # -G: the --data-urlencode pairs go in the query string, encoded
        parts.insert(1, "-G")
        parts += [f"--data-urlencode '{p['name']}={p.get('example', '...')}'" for p in query]
    if secured:
        key = "$ADMIN_KEY" if path.startswith("/refresh") else "$KEY"
        parts.append(f'-H "X-API-Key: {key}"')
    body = _deref(spec, op.get("requestBody", {})).get("content", {}).get("application/json", {})
    examples = body.get("examples", {})
    if examples:
        value = next(iter(examples.values())).get("value")
        parts.append("-H 'Content-Type: application/json' -d '"
                     + json.dumps(value, ensure_ascii=False) + "'")
    return " ".join(parts)


def _deref(spec: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _operation(spec: dict, path: str, method: str, op: dict) -> str:
    parts = [f'<section class="op" id="{_text(method + path)}"><h3><span class="m {method}">'
             f"{method}</span> <code>{_text(path)}</code> {_text(op.get('summary'))}</h3>"]
    if op.get("description"):
        parts.append(markdown(op["description"]))
    parts.append(f"<p class=ex>Example:</p><pre>{_text(example(spec, path, method, op))}</pre>")
    body = _deref(spec, op.get("requestBody", {})).get("content", {})
    for media, content in body.items():
        parts.append(f"<p>Body <code>{_text(media)}</code>: "
                     f"<code>{_text(_ref_name(content.get('schema', {})))}</code></p>")
    rows = "".join(f"<tr><td>{_text(status)}</td>"
                   f"<td>{markdown(_deref(spec, resp).get('description'))}</td></tr>"
                   for status, resp in op.get("responses", {}).items())
    parts.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table></section>")
    return "".join(parts)


@functools.lru_cache(maxsize=1)
def page() -> bytes:
    spec = json.loads(spec_bytes())
    info = spec.get("info", {})
    servers = "; ".join(f"<code>{_text(s.get('url'))}</code> {_text(s.get('description'))}"
                        for s in spec.get("servers", []))
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>{_text(info.get('title'))}"
             f" API</title><meta name=viewport content='width=device-width'><style>{_STYLE}</style>"
             f"<h1>{_text(info.get('title'))} API <small>{_text(info.get('version'))}</small></h1>"
             "<nav><a href='app'>The forecast page</a><a href='openapi.json'>openapi.json</a>"
             f"(OpenAPI {_text(spec.get('openapi'))})</nav>{markdown(info.get('description'))}"
             f"<p>In the examples, <code>$URL</code> is the function's address ({servers}), "
             "<code>$KEY</code> a client API key and <code>$ADMIN_KEY</code> the admin key, "
             "when the function has keys.</p>"
             "<h2>Routes</h2>"]
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                parts.append(_operation(spec, path, method, item[method]))
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        parts.append(f"<h3 id='{_text(name)}'>{_text(name)}</h3>{markdown(schema.get('description'))}"
                     f"{_schema_table(schema)}")
    return "".join(parts).encode("utf-8")
