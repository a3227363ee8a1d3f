"""The old system's Streamlit front (its `app/streamlit_app.py`), replayed against both
functions over real HTTP: the exact requests it builds, on both of its pages, with its
three model choices, its ping and refresh buttons, and its exact parsing of the answers.
A change that breaks the old front fails here.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import requests

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import Server  # noqa: E402

# The front's menu: label -> (model_type, metric).
MODEL_MAP = {
    "Random Forest": ("rf", "r2"),
    "Réseau de Neurones": ("nn", "r2"),
    "RF Classifier (Affluence)": ("rf_class", "f1_score"),
}
# The three example records it ships, as it ships them.
RAW_SAMPLES = [
    {"nom_du_compteur": "35 boulevard de Ménilmontant NO-SE",
     "date_et_heure_de_comptage": "2025-05-17 18:00:00+02:00",
     "coordonnées_géographiques": "48.8672, 2.3501", "mois_annee_comptage": "mai 2025"},
    {"nom_du_compteur": "Totem 73 boulevard de Sébastopol S-N",
     "date_et_heure_de_comptage": "2024-11-12 08:00:00+02:00",
     "coordonnées_géographiques": "48.8639, 2.3895", "mois_annee_comptage": "novembre 2024"},
    {"nom_du_compteur": "Quai d'Orsay E-O",
     "date_et_heure_de_comptage": "2024-06-03 15:00:00+02:00",
     "coordonnées_géographiques": "48.8784, 2.3574", "mois_annee_comptage": "juin 2024"},
]
ADMIN_KEY = "old-front-admin-key"


@pytest.fixture(scope="module")
def urls(served_pair):
    """The front's secrets: api_url (regress) and api_rf_class_url (classify), both
    ending in /predict as the front expects; the session's two servers on
    `trained_store` (tests/conftest.py)."""
    return {"API_URL": served_pair["regress"].url + "/predict",
            "API_RF_CLASS_URL": served_pair["classify"].url + "/predict"}


def call_prediction_api(url: str, payload: dict, timeout: int = 60) -> dict:
    # The front's wrapper: requests' json= (which refuses NaN), raise_for_status, .json().
    response = requests.post(url, json=payload, timeout=timeout)
    response.raise_for_status()
    return response.json()


def api_url_for(urls: dict, model_type: str) -> str:
    return urls["API_RF_CLASS_URL"] if model_type == "rf_class" else urls["API_URL"]


def example_page_result(result: dict, model_type: str):
    """What the example page shows, computed exactly as it does."""
    pred = result["predictions"][0]
    if model_type == "rf_class":
        return "affluence" if pred == 1 else "faible"
    pred = pred[0] if isinstance(pred, (list, tuple)) else pred  # its [val] / [[val]] case
    return round(float(pred))


@pytest.mark.parametrize("choice", MODEL_MAP)
@pytest.mark.parametrize("sample", range(len(RAW_SAMPLES)))
def test_the_example_page_works_for_every_model_choice_and_example(urls, choice, sample):
    model_type, metric = MODEL_MAP[choice]
    payload = {"records": [RAW_SAMPLES[sample]], "model_type": model_type, "metric": metric}
    result = call_prediction_api(api_url_for(urls, model_type), payload)
    shown = example_page_result(result, model_type)
    if model_type == "rf_class":
        assert shown in ("affluence", "faible")
        assert result["model"]["type"] == "affluence"  # which model actually served it
        assert result["label"][0] in ("faible", "forte")
    else:
        assert isinstance(shown, int) and shown >= 0
        assert result["model"]["type"] == model_type and result["model"]["metric"] == metric


@pytest.fixture(scope="module")
def csv_extract(shared_data, tmp_path_factory):
    """An extract of the live export as a user uploads it: every column, written by
    pandas with its defaults (the front reads it with pd.read_csv's defaults)."""
    export = pd.read_csv(shared_data / "paris-export-sample-2021-09.csv", sep=";")
    path = tmp_path_factory.mktemp("old-front") / "extract.csv"
    export.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("choice", MODEL_MAP)
def test_the_csv_batch_page_works_for_every_model_choice(urls, csv_extract, choice):
    model_type, metric = MODEL_MAP[choice]
    df_csv = pd.read_csv(csv_extract)
    assert len(df_csv.columns) == 16  # the export's French headers and all its columns
    payload = {"records": df_csv.to_dict(orient="records"), "model_type": model_type,
               "metric": metric}
    result = call_prediction_api(api_url_for(urls, model_type), payload)
    predictions = np.array(result["predictions"]).flatten()
    column = (predictions.round().astype(int) if model_type != "rf_class"
              else predictions.astype(int))
    df_csv["prediction_comptage_horaire"] = column
    assert len(column) == len(df_csv) == 21
    if model_type == "rf_class":
        assert set(column.tolist()) <= {0, 1}
    else:
        assert (column >= 0).all() and column.max() > 0


def post_json_dumps(url: str, payload: dict) -> requests.Response:
    """Clients that serialize with json.dumps' defaults write empty cells as NaN."""
    body = json.dumps(payload)
    assert "NaN" in body
    return requests.post(url, data=body, headers={"Content-Type": "application/json"},
                         timeout=60)


def test_empty_cells_in_ignored_fields_are_fine(urls, csv_extract):
    df = pd.read_csv(csv_extract)
    df.loc[3, "mois_annee_comptage"] = np.nan
    df.loc[5, "Identifiant technique compteur"] = np.nan
    with pytest.raises(requests.exceptions.InvalidJSONError):  # the front's own requests
        call_prediction_api(urls["API_URL"], {"records": df.to_dict(orient="records")})
    r = post_json_dumps(urls["API_URL"], {"records": df.to_dict(orient="records"),
                                          "model_type": "rf", "metric": "r2"})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(df)


@pytest.mark.parametrize("column, field", [
    ("Date et heure de comptage", "date_et_heure_de_comptage"),
    ("Nom du compteur", "nom_du_compteur"),
])
def test_an_empty_cell_in_a_needed_field_is_a_422_naming_record_and_field(
        urls, csv_extract, column, field):
    df = pd.read_csv(csv_extract)
    df.loc[7, column] = np.nan
    r = post_json_dumps(urls["API_RF_CLASS_URL"], {"records": df.to_dict(orient="records"),
                                                   "model_type": "rf_class",
                                                   "metric": "f1_score"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_records"
    assert [(d["record"], d["field"]) for d in error["details"]] == [(7, field)]


def test_what_is_not_json_is_still_refused(urls):
    r = requests.post(urls["API_URL"], data=b'{"records": [nan]}',
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_a_metric_that_does_not_apply_to_the_task_is_a_422_naming_the_valid_ones(urls):
    r = requests.post(urls["API_RF_CLASS_URL"], json={"records": [RAW_SAMPLES[0]],
                                                      "model_type": "rf_class", "metric": "r2"},
                      timeout=30)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "'r2'" in message and "f1_score" in message and "roc_auc" in message


@pytest.mark.parametrize("which", ["API_URL", "API_RF_CLASS_URL"])
def test_the_ping_button_gets_200_from_docs(urls, which):
    ping_response = requests.get(urls[which].replace("/predict", "/docs"), timeout=10)
    assert ping_response.status_code == 200
    assert ping_response.headers["Content-Type"].startswith("text/html")
    page = ping_response.text
    assert "/refresh_models" in page and "/predict" in page and "<script" not in page
    spec = requests.get(urls[which].replace("/predict", "/openapi.json"), timeout=10)
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.")


def test_the_refresh_button_reloads_the_models_where_no_admin_key_is_set(urls):
    refresh_url = urls["API_URL"].replace("/predict", "/refresh_models")
    refresh_response = requests.post(refresh_url, timeout=15)
    assert refresh_response.status_code == 200
    assert refresh_response.json()["refreshed"] is True


def test_the_refresh_button_needs_the_admin_key_where_one_is_set(trained_store):
    env = {"MODEL_STORE": trained_store, "ADMIN_KEY": ADMIN_KEY, "API_KEYS": "client-key"}
    with Server("regress", env) as server:
        refresh_url = server.url + "/refresh_models"
        assert requests.post(refresh_url, timeout=15).status_code == 401
        keyed = requests.post(refresh_url, headers={"X-API-Key": ADMIN_KEY}, timeout=15)
        assert keyed.status_code == 200 and keyed.json()["refreshed"] is True
