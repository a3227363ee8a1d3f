"""GET /docs: the contract readable in a browser (descriptions rendered from their
Markdown, a curl example per route, a link to the page) under a policy that lets
nothing but its own inline stylesheet run or load."""

from __future__ import annotations

import base64
import hashlib
import json
import re


pytest_plugins = ["tests.function_clients"]


def _descriptions(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _descriptions(value)


def test_every_description_renders_as_commonmark_does():
    from markdown_it import MarkdownIt

    from velocast.serving import api_docs

    reference = MarkdownIt("commonmark")
    spec = json.loads(api_docs.spec_bytes())
    seen = 0
    for text in _descriptions(spec):
        expected = re.sub(r"\s+", " ", reference.render(text)).replace("> <", "><").strip()
        assert re.sub(r"\s+", " ", api_docs.markdown(text)) == expected, text
        seen += 1
    assert seen > 50


def test_docs_page_has_an_example_per_route_and_links_the_page(regress_fn):
    from velocast.serving import service

    r = regress_fn.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "href='app'" in html and "`" not in re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)
    sections = re.findall(r'<section class="op" id="([a-z]+)(/[^"]*)">(.*?)</section>', html, re.S)
    documented = {(m, p) for m, p, _ in sections}
    for path, method in service.ROUTES.items():
        assert (method.lower(), path) in documented, path
    for method, path, body in sections:
        example = re.search(r"<pre>(curl -s[^<]*)</pre>", body)
        assert example, f"no example for {method} {path}"
        assert f"$URL{path.replace('{file}', 'forecast.js')}" in example.group(1)


def test_docs_are_served_under_a_script_free_policy(regress_fn):
    from velocast.serving import api_docs

    r = regress_fn.get("/docs")
    policy = r.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'") and "script-src" not in policy
    style = re.search(r"<style>(.*?)</style>", r.get_data(as_text=True), re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and style == api_docs._STYLE
    assert regress_fn.client.head("/docs").status_code == 200
    assert regress_fn.post({}, path="/docs").status_code == 405


def test_unknown_route_lists_the_page_too(regress_fn):
    r = regress_fn.get("/nowhere")
    assert r.status_code == 404
    message = r.json["error"]["message"]
    assert "/app" in message and "/counts" in message and "/docs" in message
