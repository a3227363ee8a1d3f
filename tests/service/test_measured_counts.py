"""GET /counts: a counter's measured hours on a Paris day, read from the day objects
the daily ingest writes (velocast.train.counts.commit, the ingest's own write path),
in a store of their own (COUNTS_STORE) as in the cloud's data bucket."""

from __future__ import annotations

import datetime as dt

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import error_of  # noqa: E402

pytest_plugins = ["tests.function_clients"]

COUNTER = "Totem 73 boulevard de Sébastopol S-N"
OTHER = "35 boulevard de Ménilmontant NO-SE"
DAY = "2021-06-01"  # summer time: local hour h is h - 2 UTC


def _rows(day: str, counter: str, base: float):
    start = dt.datetime.fromisoformat(f"{day}T00:00:00+02:00")
    for h in range(24):
        if h == 13:
            continue  # an hour the export did not publish
        epoch = int((start + dt.timedelta(hours=h)).timestamp())
        yield (counter, epoch, base + h, 48.864, 2.350)


@pytest.fixture(scope="module")
def counts_store(tmp_path_factory):
    from velocast.catalog.store import open_store
    from velocast.train import counts

    folder = tmp_path_factory.mktemp("data-bucket")
    rows = list(_rows(DAY, COUNTER, 100.0)) + list(_rows(DAY, OTHER, 7.0))
    counts.commit(open_store(str(folder)), rows, "test", {})
    return folder


@pytest.fixture(scope="module")
def regress_with_counts(trained_store, counts_store):
    from tests.function_clients import load_function

    return load_function("regress", MODEL_STORE=str(trained_store), COUNTS_STORE=str(counts_store),
                         API_KEYS="k1", REFRESH_SECONDS="3600")


def _get(fn, **params):
    return fn.get("/counts", headers={"X-API-Key": "k1"}, query_string=params)


def test_counts_are_the_stored_hours_in_paris_time(regress_with_counts):
    r = _get(regress_with_counts, counter=COUNTER, date=DAY)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["counts"] == [100.0 + h if h != 13 else None for h in range(24)]
    assert body["day_stored"] and body["counter_found"] and body["ingested"]
    assert body["time_zone"] == "Europe/Paris"
    assert _get(regress_with_counts, counter=OTHER, date=DAY).json["counts"][0] == 7.0


def test_a_day_or_counter_not_stored_says_so(regress_with_counts):
    missing_day = _get(regress_with_counts, counter=COUNTER, date="2021-06-02").json
    assert missing_day["counts"] is None and not missing_day["day_stored"]
    assert missing_day["ingested"]
    unknown = _get(regress_with_counts, counter="nowhere", date=DAY).json
    assert unknown["counts"] is None and unknown["day_stored"] and not unknown["counter_found"]


def test_a_store_without_ingest_answers_nothing_ingested(regress_fn):
    body = regress_fn.get("/counts", query_string={"counter": COUNTER, "date": DAY}).json
    assert body["ingested"] is False and body["counts"] is None


@pytest.mark.parametrize("params", [{"counter": COUNTER}, {"date": DAY},
                                    {"counter": COUNTER, "date": "2021-02-30"},
                                    {"counter": COUNTER, "date": "01/06/2021"}])
def test_malformed_parameters_are_422(regress_with_counts, params):
    r = _get(regress_with_counts, **params)
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"


def test_counts_need_the_client_key(regress_with_counts):
    r = regress_with_counts.get("/counts", query_string={"counter": COUNTER, "date": DAY})
    assert r.status_code == 401


def test_unreadable_counts_store_is_503_not_500(make_function, trained_store, tmp_path):
    manifests = tmp_path / "counts" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "00000001.json").write_text("{cut short")
    fn = make_function("regress", MODEL_STORE=str(trained_store), COUNTS_STORE=str(tmp_path))
    r = fn.get("/counts", query_string={"counter": COUNTER, "date": DAY})
    assert r.status_code == 503 and error_of(r)["code"] == "counts_unavailable"
