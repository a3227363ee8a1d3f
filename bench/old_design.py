"""A faithful replica of the OLD system's regression path, for the benchmark only.

Never imported by a function or by shared/velocast: it exists so `bench/run.py` can
compare the new design with what it replaces, on the same rows and the same machine.

What the old system did, and so what this does:
  - request records (snake_case keys, or the export's headers) go into a pandas
    DataFrame; columns are renamed; dates are parsed with `pd.to_datetime`;
    hour / weekday / month are extracted in Paris time; cyclic sin/cos time features
    are added; coordinates are split into latitude / longitude; counter names are
    one-hot encoded with `pd.get_dummies` and re-indexed to the training columns;
  - a scikit-learn RandomForestRegressor(n_estimators=50, max_depth=20) is fitted on
    raw hourly counts (no log transform), with n_jobs left at its default (None);
  - the fitted estimator and its column list are saved with joblib and loaded back
    with joblib.load when the function starts.

It is also the old function itself, for the cold-start and HTTP comparison:
`functions-framework --source bench/old_design.py --target predict` with
OLD_MODEL_URI set (a path, or gs://bucket/name read through google-cloud-storage as
the old function did: download to /tmp, then joblib.load) loads the pickle in global
scope at import, like the old main.py, and serves POST {"records": [...]}.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

PARIS = "Europe/Paris"

# The old system's renames (both spellings its clients send).
RENAME = {
    "nom_du_compteur": "counter",
    "Nom du compteur": "counter",
    "date_et_heure_de_comptage": "date",
    "Date et heure de comptage": "date",
    "coordonnées_géographiques": "coordinates",
    "coordonnees_geographiques": "coordinates",
    "Coordonnées géographiques": "coordinates",
    "comptage_horaire": "count",
    "Comptage horaire": "count",
}
TIME_COLUMNS = ["hour", "weekday", "month", "hour_sin", "hour_cos", "weekday_sin",
                "weekday_cos", "month_sin", "month_cos", "latitude", "longitude"]


def _derive(counter: pd.Series, local: pd.Series, latitude: pd.Series,
            longitude: pd.Series) -> pd.DataFrame:
    """Time and one-hot columns from Paris-local datetimes (shared by fit and predict)."""
    df = pd.DataFrame({"counter": counter.to_numpy()})
    df["hour"] = local.dt.hour.to_numpy()
    df["weekday"] = local.dt.weekday.to_numpy()
    df["month"] = local.dt.month.to_numpy()
    df["hour_sin"] = np.sin(2 * np.pi * df["hour"] / 24)
    df["hour_cos"] = np.cos(2 * np.pi * df["hour"] / 24)
    df["weekday_sin"] = np.sin(2 * np.pi * df["weekday"] / 7)
    df["weekday_cos"] = np.cos(2 * np.pi * df["weekday"] / 7)
    df["month_sin"] = np.sin(2 * np.pi * (df["month"] - 1) / 12)
    df["month_cos"] = np.cos(2 * np.pi * (df["month"] - 1) / 12)
    df["latitude"] = latitude.to_numpy(dtype=float)
    df["longitude"] = longitude.to_numpy(dtype=float)
    dummies = pd.get_dummies(df["counter"], prefix="counter", dtype=np.uint8)
    return pd.concat([df.drop(columns=["counter"]), dummies], axis=1)


def clean(records) -> pd.DataFrame:
    """The old request cleaning: a list of record dicts -> raw feature frame."""
    df = pd.DataFrame(records)
    df = df.rename(columns=RENAME)
    df = df.drop(columns=[c for c in df.columns if c not in ("counter", "date", "coordinates")])
    df["counter"] = df["counter"].astype(str).str.strip()
    moments = pd.to_datetime(df["date"], utc=True, format="ISO8601")
    local = moments.dt.tz_convert(PARIS)
    coordinates = df["coordinates"].astype(str).str.split(",", expand=True)
    latitude = pd.to_numeric(coordinates[0].str.strip(), errors="coerce")
    longitude = pd.to_numeric(coordinates[1].str.strip(), errors="coerce")
    return _derive(df["counter"], local, latitude, longitude)


def to_matrix(features: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Align one-hot columns with the training columns (unknown counters -> all zero)."""
    return features.reindex(columns=columns, fill_value=0)


def training_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The old features for velocast's loaded rows (counter, epoch, latitude, longitude,
    count): the same derivation as `clean`, minus re-parsing 400k date strings."""
    local = pd.to_datetime(frame["epoch"], unit="s", utc=True).dt.tz_convert(PARIS)
    features = _derive(frame["counter"], local, frame["latitude"], frame["longitude"])
    return features, frame["count"].to_numpy(dtype=np.float64)


def fit(features: pd.DataFrame, counts: np.ndarray, fit_jobs: int | None = None,
        random_state: int = 42) -> RandomForestRegressor:
    """The old model. `fit_jobs` only speeds up the benchmark's fit: trees are the same
    whatever n_jobs (random_state fixes them) and n_jobs is reset to the old default
    (None) before saving, so predict behaves as the old system's did."""
    model = RandomForestRegressor(n_estimators=50, max_depth=20, random_state=random_state,
                                  n_jobs=fit_jobs)
    model.fit(features, counts)
    model.set_params(n_jobs=None)
    return model


def save(model: RandomForestRegressor, columns: list[str], path) -> None:
    joblib.dump({"model": model, "columns": list(columns)}, path)


def load(path) -> dict:
    return joblib.load(path)


def predict(bundle: dict, records) -> np.ndarray:
    """The old regression path for one request: pandas cleaning + RF predict."""
    matrix = to_matrix(clean(records), bundle["columns"])
    return bundle["model"].predict(matrix)


def train_and_save(frame: pd.DataFrame, path, fit_jobs: int | None = None) -> dict:
    started = time.perf_counter()
    features, counts = training_frame(frame)
    model = fit(features, counts, fit_jobs=fit_jobs)
    seconds = time.perf_counter() - started
    save(model, list(features.columns), path)
    nodes = int(sum(e.tree_.node_count for e in model.estimators_))
    return {"fit_seconds": round(seconds, 1), "rows": len(features),
            "features": features.shape[1], "tree_nodes": nodes}


# -- the old function ----------------------------------------------------------------

def _load_from_uri(uri: str) -> dict:
    if not uri.startswith("gs://"):
        return load(uri)
    from google.cloud import storage  # the old function's client

    bucket, _, name = uri[len("gs://"):].partition("/")
    client = storage.Client()
    local = os.path.join(tempfile.gettempdir(), f"old-model-{os.getpid()}.joblib")
    client.bucket(bucket).blob(name).download_to_filename(local)
    try:
        return load(local)
    finally:
        os.unlink(local)


BUNDLE = _load_from_uri(os.environ["OLD_MODEL_URI"]) if os.environ.get("OLD_MODEL_URI") else None


def predict_http(request):
    """The old HTTP entry point: {"records": [...]} -> {"predictions": [...]}."""
    body = request.get_json(silent=True) or {}
    try:
        predictions = predict(BUNDLE, body["records"])
    except Exception as exc:  # noqa: BLE001  (the old function answered 400 on anything)
        return json.dumps({"error": str(exc)}), 400, {"Content-Type": "application/json"}
    return (json.dumps({"predictions": [round(float(p), 1) for p in predictions]}), 200,
            {"Content-Type": "application/json"})
