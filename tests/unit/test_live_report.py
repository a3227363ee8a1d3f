"""`make report`: live accuracy per day and model version as a PNG."""

from __future__ import annotations

from velocast.catalog.store import LocalStore


def test_report_plots_the_newest_measurement_per_day_and_version(tmp_path):
    import json

    from velocast.train.report import collect, plot

    store = LocalStore(tmp_path / "store")
    for run, value in (("20250101T000000Z-aaaaaa", 0.9), ("20250102T000000Z-bbbbbb", 0.4)):
        store.write_once(f"live/regress/{run}.json", json.dumps({"models": [
            {"model_type": "gbdt", "version": "v1", "days": {"2025-01-01": {"rows": 10, "rmse_log": value,
                                                                         "mae": 3.0}}}]}).encode())
    series = collect(store)
    assert series == {("regress", "gbdt", "v1"): {"2025-01-01": {"rows": 10, "rmse_log": 0.4, "mae": 3.0}}}
    out = tmp_path / "live.png"
    assert plot(series, str(out)) == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_never_retrained_model_is_a_reference_not_a_served_series(tmp_path):
    import json

    from velocast.train.report import collect, plot

    store = LocalStore(tmp_path / "store")
    store.write_once("live/regress/20250103T000000Z-cccccc.json", json.dumps({"models": [
        {"model_type": "gbdt", "version": "v2", "days": {"2025-01-02": {"rows": 48, "rmse_log": 0.3}}},
        {"model_type": "gbdt", "version": "v0", "reference": True,
         "days": {"2025-01-02": {"rows": 48, "rmse_log": 0.5}}}]}).encode())
    references: dict = {}
    series = collect(store, references)
    assert set(series) == {("regress", "gbdt", "v2")}
    assert references == {("regress", "gbdt", "v0"): {"2025-01-02": {"rows": 48, "rmse_log": 0.5}}}
    out = tmp_path / "live.png"
    plot(series, str(out), references)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
