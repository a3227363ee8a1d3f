"""What the forecast page needs from a function, in process: the page's files,
GET /counters, and CORS limited to ALLOWED_ORIGINS (preflights included)."""

from __future__ import annotations

import math

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import error_of  # noqa: E402

pytest_plugins = ["tests.function_clients"]

PAGE_ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def keyed(trained_store):
    from tests.function_clients import load_function

    return load_function("classify", MODEL_STORE=str(trained_store), API_KEYS="k1",
                         ALLOWED_ORIGINS=f"{PAGE_ORIGIN}, https://velocast.example.org",
                         CLASSIFY_URL='http://127.0.0.1:8080/"><script>')


def test_counters_come_from_the_served_models_card(regress_fn, trained_store):
    from velocast.catalog import registry
    from velocast.catalog.store import open_store

    r = regress_fn.get("/counters")
    assert r.status_code == 200, r.json
    body = r.json
    store = open_store(str(trained_store))
    served = regress_fn.service.cache.get()
    assert body["model"]["version"] == served.entry.version
    card = registry.read_card(store, served.entry)["counter_table"]["counters"]
    assert [c["name"] for c in body["counters"]] == sorted(card)
    for c in body["counters"]:
        known = card[c["name"]]
        assert (c["latitude"], c["longitude"]) == (known["latitude"], known["longitude"])
        assert c["mean_count"] == round(known["mean_count"], 1)
        assert len(c["usual"]) == 3 and all(len(day) == 24 for day in c["usual"])
        assert c["usual"][0][8] == round(math.expm1(known["profile"][0][8]), 1)
    assert "2025-07-14" in body["public_holidays"] or "2026-07-14" in body["public_holidays"]


def test_counters_need_the_client_key(keyed):
    assert error_of(keyed.get("/counters"))["code"] == "unauthenticated"
    assert keyed.get("/counters", headers={"X-API-Key": "nope"}).status_code == 403
    assert keyed.get("/counters", headers={"X-API-Key": "k1"}).status_code == 200


def test_counters_503_before_any_model(make_function, tmp_path):
    fn = make_function("regress", MODEL_STORE=str(tmp_path / "empty"))
    r = fn.get("/counters")
    assert r.status_code == 503 and error_of(r)["code"] == "no_model"
    assert int(r.headers["Retry-After"]) > 0


def test_page_is_served_without_a_key_with_a_strict_policy(keyed):
    r = keyed.get("/app")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    # CLASSIFY_URL is escaped into an attribute, never markup.
    assert 'data-classify-url="http://127.0.0.1:8080/&quot;&gt;&lt;script&gt;"' in html
    policy = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "connect-src 'self' http://127.0.0.1:8080" in policy
    html_root = keyed.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert html_root.status_code == 200 and html_root.get_data() == r.get_data()
    # A JSON client's GET / is still the 405 it always was.
    assert keyed.get("/").status_code == 405


@pytest.mark.parametrize("path,status", [("/app/forecast.js", 200), ("/app/forecast.css", 200),
                                         ("/app/../service.py", 404), ("/app/page.py", 404),
                                         ("/app/nope.js", 404), ("/app/forecast.html", 404)])
def test_page_files(keyed, path, status):
    r = keyed.get(path)
    assert r.status_code == status
    if status == 200:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.mimetype in ("text/javascript", "text/css")


def test_app_with_a_slash_redirects_so_relative_urls_resolve(keyed):
    r = keyed.get("/app/")
    assert r.status_code == 308 and r.headers["Location"] == "../app"


def test_cors_answers_only_configured_origins(keyed):
    ok = keyed.post({"records": []}, headers={"Origin": PAGE_ORIGIN, "X-API-Key": "k1"})
    assert ok.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert "Retry-After" in ok.headers["Access-Control-Expose-Headers"]
    assert ok.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    other = keyed.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    # Errors carry the header too, so the page can read a 401.
    denied = keyed.get("/counters", headers={"Origin": "https://velocast.example.org"})
    assert denied.status_code == 401
    assert denied.headers["Access-Control-Allow-Origin"] == "https://velocast.example.org"


def test_preflight(keyed):
    asked = {"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-api-key"}
    r = keyed.client.options("/predict", headers=asked)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert "X-API-Key" in r.headers["Access-Control-Allow-Headers"]
    assert set(r.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
    refused = keyed.client.options("/predict", headers={**asked, "Origin": "https://evil.example"})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert error_of(refused)["code"] == "origin_not_allowed"
    put = keyed.client.options("/predict", headers={**asked, "Access-Control-Request-Method": "PUT"})
    assert put.status_code == 403


def test_no_cors_without_allowed_origins(classify_fn):
    r = classify_fn.get("/health", headers={"Origin": PAGE_ORIGIN})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert classify_fn.client.options("/predict", headers={
        "Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST"}).status_code == 403


@pytest.mark.parametrize("origins", ["*", "http://ok.example, *", "ok.example", "http://a/b"])
def test_wildcard_or_malformed_origins_are_refused(origins):
    from velocast.serving import page

    with pytest.raises(ValueError, match="ALLOWED_ORIGINS"):
        page.PageConfig.from_env({"ALLOWED_ORIGINS": origins})


@pytest.mark.parametrize("host,loopback", [("127.0.0.1:8000", True), ("localhost:8000", True),
                                           ("[::1]:8000", True),
                                           ("europe-west1-p.cloudfunctions.net", False),
                                           ("localhost.evil.example", False)])
def test_loopback_in_connect_src_only_for_a_page_served_from_loopback(keyed, host, loopback):
    """N15: served from a public host, a ?classify=http://127.0.0.1:N link must not be
    able to send the reader's key to a port on their own machine."""
    policy = keyed.get("/app", headers={"Host": host}).headers["Content-Security-Policy"]
    connect = next(d for d in policy.split("; ") if d.startswith("connect-src"))
    assert ("http://localhost:*" in connect and "http://127.0.0.1:*" in connect) == loopback
    assert "http://127.0.0.1:8080" in connect  # CLASSIFY_URL itself, wherever it is
