"""velocast.train.publish: copying a model store write-once (registry entries last, an existing
object kept only when it holds the same bytes) and acting as the trainer service
account through google-auth's impersonated credentials, against a loopback stand-in
for the IAM Credentials API and fake-gcs-server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from velocast.train.publish import (STORAGE_SCOPE, Copied, PublishError, copy_store,
                              impersonated_client)
from velocast.catalog.store import LocalStore, open_store

pytest_plugins = ["tests.gcs_fixtures"]

TRAINER = "velocast-trainer@p.iam.gserviceaccount.com"


class RecordingStore(LocalStore):
    """A folder store that remembers the order of its writes."""

    def __init__(self, folder):
        super().__init__(folder)
        self.written: list[str] = []

    def write_once(self, name, data, content_type="application/octet-stream"):
        super().write_once(name, data, content_type)
        self.written.append(name)


def test_copy_writes_registry_entries_last(trained_store, tmp_path):
    source = LocalStore(trained_store)
    destination = RecordingStore(tmp_path / "copy")
    done = copy_store(source, destination)
    names = source.list("")
    assert done == Copied(copied=len(names), kept=0)
    assert sorted(destination.written) == names
    registry_at = [i for i, n in enumerate(destination.written) if n.startswith("registry/")]
    assert registry_at and registry_at == list(range(len(names) - len(registry_at), len(names)))
    assert all(destination.read(n) == source.read(n) for n in names)


def test_copy_keeps_identical_objects_and_refuses_other_bytes(trained_store, tmp_path):
    source = LocalStore(trained_store)
    destination = LocalStore(tmp_path / "copy")
    first = source.list("")[0]
    destination.write_once(first, source.read(first))
    again = copy_store(source, destination)
    assert again == Copied(copied=len(source.list("")) - 1, kept=1)

    clash = LocalStore(tmp_path / "clash")
    clash.write_once(first, b"other bytes")
    with pytest.raises(PublishError, match="immutable, nothing was overwritten"):
        copy_store(source, clash)
    assert clash.read(first) == b"other bytes"
    assert not [n for n in clash.list("") if n.startswith("registry/")]


def test_copy_refuses_a_folder_without_registry(tmp_path):
    folder = LocalStore(tmp_path / "not-a-store")
    folder.write_once("models/x.onnx", b"x")
    with pytest.raises(PublishError, match="no registry entry"):
        copy_store(folder, LocalStore(tmp_path / "out"))


class FakeIamCredentials(BaseHTTPRequestHandler):
    """generateAccessToken of the IAM Credentials API: records the call, hands out a token."""

    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "body": body,
                                 "authorization": self.headers.get("Authorization")})
        answer = json.dumps({"accessToken": "impersonated-token",
                             "expireTime": "2099-01-01T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def iam_endpoint():
    FakeIamCredentials.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIamCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (f"http://127.0.0.1:{server.server_address[1]}/v1/projects/-/serviceAccounts/"
               f"{TRAINER}:generateAccessToken")
    finally:
        server.shutdown()
        server.server_close()


def test_publishing_as_the_trainer_uses_impersonated_credentials(
        trained_store, fake_gcs, iam_endpoint, monkeypatch):
    from google.oauth2.credentials import Credentials

    for key, value in fake_gcs.env.items():
        monkeypatch.setenv(key, value)
    bucket = fake_gcs.new_bucket("publish-as")
    client = impersonated_client(TRAINER, "p", iam_endpoint_override=iam_endpoint,
                                 source_credentials=Credentials(token="my-adc-token"))
    done = copy_store(LocalStore(trained_store), open_store(f"gs://{bucket}", client=client))
    assert done.copied == len(LocalStore(trained_store).list("")) and done.kept == 0
    assert fake_gcs.store(bucket).list("") == LocalStore(trained_store).list("")

    # The token the GCS calls carried was minted for the trainer, from our own token.
    assert client._credentials.token == "impersonated-token"
    assert FakeIamCredentials.calls, "the IAM Credentials API was never asked"
    call = FakeIamCredentials.calls[0]
    assert call["path"].endswith(f"/serviceAccounts/{TRAINER}:generateAccessToken")
    assert call["authorization"] == "Bearer my-adc-token"
    assert call["body"]["scope"] == [STORAGE_SCOPE]
