"""The daily loop on loopback: fake portal -> `make retrain` into a fake-gcs-server
bucket -> both functions, running the whole time, serve what was promoted.

Three retrains on real rows (six counters, 40-day window, the newest whole day held
out, gbdt and affluence only, to keep it to about a minute):
1. empty bucket, newest day partial (2 hours): the partial day is left out, the first
   models are promoted and served without a restart;
2. five more days, tolerance widened (this step tests pickup, not the comparison):
   a new version is promoted and served, and live accuracy of the first one appears;
3. six more days of which the four before the held-out day are scrambled (each
   counter's counts shuffled across its hours): the gbdt candidate, fitted on them, is
   worse on the held-out day, nothing is promoted, and the functions keep serving the
   same versions. Only gbdt is refitted there: on six counters, affluence's F1 at the
   0.5 threshold swings by more than the damage (0.34 to 0.79 between 3-day holdouts),
   so it would test luck.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import time

import pytest
import requests

from tests.fake_portal import FakePortal, load_rows
from tests.function_clients import ROOT, Server
from velocast.catalog import promotions, registry

pytest_plugins = ["tests.gcs_fixtures"]
pytestmark = [pytest.mark.real_data, pytest.mark.slow]

UTC = dt.timezone.utc
ARGS = "--window-days 40 --holdout-days 1"
RECORD = {"nom_du_compteur": "152 boulevard du Montparnasse E-O",
          "date_et_heure_de_comptage": "2021-07-21T08:00:00+02:00",
          "coordonnées_géographiques": "48.840801,2.333233"}


NEW_COUNTER = "254 rue de Vaugirard NE-SO"
OUTAGE = "18 quai de l'Hôtel de Ville NO-SE"


def epoch(*args) -> int:
    return int(dt.datetime(*args, tzinfo=UTC).timestamp())


def make_retrain(fake_gcs, bucket: str, portal: FakePortal, extra: str = "",
                 models: str = "gbdt,affluence") -> str:
    env = {**os.environ, **fake_gcs.env, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["make", "--no-print-directory", "retrain", f"STORE=gs://{bucket}",
         f"SOURCE={portal.url}", f"MODELS={models}", f"RETRAIN_ARGS={ARGS} {extra}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def served_version(server: Server) -> str | None:
    response = requests.post(server.url + "/predict", json={"records": [RECORD]}, timeout=30)
    return response.json()["model"]["version"] if response.status_code == 200 else None


def wait_for(server: Server, version: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_version(server) == version:
            return
        time.sleep(0.5)
    raise AssertionError(f"{server.name} still serves {served_version(server)}, not {version}")


def newest_promoted(store, task: str, model_type: str) -> str:
    return promotions.list_promotions(store, task)[-1].served[model_type]["version"]


@pytest.fixture(scope="module")
def portal(shared_data):
    rows = load_rows(shared_data / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz", counters=7,
                     first_day="2021-05-20", last_day="2021-07-24",
                     skip=("20 Avenue de Clichy NO-SE", "20 Avenue de Clichy SE-NO"))
    # The seventh counter is installed on 2021-07-10: the second retrain must learn it.
    rows = [r for r in rows if r["nom_compteur"] != NEW_COUNTER or r["_epoch"] >= epoch(2021, 7, 10)]
    # Another one counts nothing on the newest whole day the second retrain sees: an outage.
    for r in rows:
        if r["nom_compteur"] == OUTAGE and epoch(2021, 7, 13, 22) <= r["_epoch"] < epoch(2021, 7, 14, 22):
            r["sum_counts"] = "0.0"
    with FakePortal(rows) as server:
        yield server


def test_daily_loop_promotes_serves_and_refuses_a_worse_challenger(fake_gcs, portal):
    bucket = fake_gcs.new_bucket("loop")
    store = fake_gcs.store(bucket)
    env = {**fake_gcs.env, "MODEL_STORE": f"gs://{bucket}", "REFRESH_SECONDS": "1",
           "GCP_PROJECT": "velocast-loop"}
    servers = {name: Server(name, env) for name in ("classify", "regress")}
    try:
        for server in servers.values():
            server.spawn()
        for server in servers.values():
            server.wait_ready(timeout=90)
        assert served_version(servers["regress"]) is None    # nothing published yet

        # 1. The first models of an empty store are promoted, and served as they land.
        portal.available_until = epoch(2021, 7, 10)
        out = make_retrain(fake_gcs, bucket, portal)
        assert "no served model of this type yet" in out
        first = {"regress": newest_promoted(store, "regress", "gbdt"),
                 "classify": newest_promoted(store, "classify", "affluence")}
        for task, server in servers.items():
            wait_for(server, first[task])
        (promotion,) = promotions.list_promotions(store, "regress")
        # 2021-07-10 has two Paris hours: the newest whole day, 07-09, is held out.
        assert promotion.holdout["from"] == "2021-07-09" == promotion.holdout["to"]
        assert promotion.holdout["tolerance"] == 0.02
        assert promotion.served["gbdt"]["promoted"] and "rmse_log" in promotion.served["gbdt"]["metrics"]

        # 2. A newer promotion is picked up by the running functions within REFRESH_SECONDS.
        portal.available_until = epoch(2021, 7, 14, 22)     # 07-14 whole, Paris time
        make_retrain(fake_gcs, bucket, portal, "--tolerance 0.5")
        second = newest_promoted(store, "regress", "gbdt")
        assert second != first["regress"]
        wait_for(servers["regress"], second)
        models = requests.get(servers["regress"].url + "/models", timeout=30).json()
        assert models["default"]["version"] == second
        (gbdt,) = [m for m in models["served"] if m["model_type"] == "gbdt"]
        assert gbdt["version"] == second and gbdt["age_days"] >= 0
        live = promotions.newest_live(store, "regress")
        (checked,) = [m for m in live["models"] if m["version"] == first["regress"]]
        # Trained to Paris day 2021-07-08: scored on the whole days after.
        assert checked["rows"] > 0 and set(checked["days"]) == {
            "2021-07-09", "2021-07-10", "2021-07-11", "2021-07-12", "2021-07-13", "2021-07-14"}
        # The new one has no newer actuals yet: the previous version's figure, labelled.
        assert gbdt["live"]["of_version"] == first["regress"] and "previous" in gbdt["live"]["note"]
        # Counters that come and go: learnt at the next retrain; an outage is flagged.
        tables = {v: registry.read_card(store, e)["counter_table"] for e in registry.list_entries(store)
                  for v in [e.version] if v in (first["regress"], second)}
        assert NEW_COUNTER not in tables[first["regress"]]["counters"]
        assert NEW_COUNTER in tables[second]["counters"]
        assert tables[second]["outages"] == {OUTAGE: "2021-07-14"}
        answer = requests.post(servers["regress"].url + "/predict", timeout=30, json={"records": [
            {"nom_du_compteur": OUTAGE, "date_et_heure_de_comptage": RECORD["date_et_heure_de_comptage"]},
            RECORD]}).json()
        assert [(w["record"], w["field"]) for w in answer["warnings"]] == [(0, "nom_du_compteur")]
        # A retrained regressor carries its 80 % interval (from its held-out residuals).
        assert all(lo <= p <= hi for lo, p, hi in
                   zip(answer["lower"], answer["predictions"], answer["upper"]))

        # 3. Scrambled training days make worse challengers: nothing promoted or served.
        rng = random.Random(0)
        by_counter: dict[str, list[dict]] = {}
        for row in portal.rows:
            if epoch(2021, 7, 15, 22) <= row["_epoch"] < epoch(2021, 7, 19, 22):
                by_counter.setdefault(row["nom_compteur"], []).append(row)
        for group in by_counter.values():
            values = [row["sum_counts"] for row in group]
            rng.shuffle(values)
            for row, value in zip(group, values):
                row["sum_counts"] = value
        portal.available_until = epoch(2021, 7, 20, 22)
        before = {t: len(promotions.list_promotions(store, t)) for t in servers}
        entries_before = len(registry.list_entries(store))
        out = make_retrain(fake_gcs, bucket, portal, models="gbdt")
        assert "regress/gbdt" in out and "kept champion" in out, out
        assert "promotions written: none" in out, out
        assert {t: len(promotions.list_promotions(store, t)) for t in servers} == before
        assert len(registry.list_entries(store)) == entries_before
        # A request after the refresh period starts a background refresh; the next one
        # sees its result.
        served_version(servers["regress"])
        time.sleep(2.5)
        assert served_version(servers["regress"]) == second
        wait_for(servers["classify"], newest_promoted(store, "classify", "affluence"))
    finally:
        for server in servers.values():
            server.close()

