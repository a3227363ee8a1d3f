"""Phase 5: cold start. Process start to the first 200 on /predict with the models on
fake-gcs-server (a gs:// store; the old function downloads its pickle from the same
server, as it did from its bucket), median of several starts, old vs velocast."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.common import FUNCTIONS, say
from bench.http_load import first_200, old_server, velocast_server


def cold_starts(make_server, body: bytes, starts: int) -> dict:
    runs = []
    for _ in range(starts):
        server = make_server()
        try:
            runs.append(first_200(server, body))
        finally:
            server.stop()
    first = [r["first_200_s"] for r in runs]
    listen = [r["listen_s"] for r in runs]
    return {"starts": starts, "median_s": round(statistics.median(first), 3),
            "min_s": round(min(first), 3), "max_s": round(max(first), 3),
            "listen_median_s": round(statistics.median(listen), 3),
            "runs_s": [round(x, 3) for x in first]}


def cold_start_phase(store: str, old_model: Path, body: bytes, starts: int,
                     logs_dir: Path) -> dict:
    from tests.gcs_fixtures import start_fake_gcs  # noqa: PLC0415
    from velocast.train.publish import copy_store  # noqa: PLC0415
    from velocast.catalog.store import open_store  # noqa: PLC0415

    say(f"cold start: {starts} starts each, models on fake-gcs-server")
    with start_fake_gcs() as gcs:
        bucket = gcs.new_bucket("bench")
        copied = copy_store(open_store(store), gcs.store(bucket)).copied
        gcs.client().bucket(bucket).blob("old/model.joblib").upload_from_filename(
            str(old_model), timeout=600)
        gcs_env = {**gcs.env, "GOOGLE_CLOUD_PROJECT": "bench"}
        cold = {}
        for fn in FUNCTIONS:
            cold[fn] = cold_starts(lambda fn=fn: velocast_server(fn, f"gs://{bucket}", gcs_env,
                                                                 logs_dir),
                                   body, starts)
            say(f"cold start {fn}: median {cold[fn]['median_s']} s")
        cold["old"] = cold_starts(lambda: old_server(f"gs://{bucket}/old/model.joblib",
                                                     gcs_env, logs_dir),
                                  body, starts)
        say(f"cold start old: median {cold['old']['median_s']} s")
        cold["objects_copied"] = copied
    return cold
