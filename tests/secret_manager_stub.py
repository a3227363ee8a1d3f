"""A loopback stand-in for Secret Manager that the real client talks to over gRPC.

Google ships no Secret Manager emulator, so this serves the one RPC the functions
use, `AccessSecretVersion`, from an in-memory dict that tests may change at any
time (rotation). Everything else answers UNIMPLEMENTED.

In-process::

    with SecretManagerStub({"projects/p/secrets/api-keys": "k1\\nk2"}) as sm:
        client = client_for(sm.address)
        sm.secrets["projects/p/secrets/api-keys"] = b"k3"   # rotate
        sm.stop(); sm.restart()                             # outage and recovery

As a process (for end-to-end tests of the functions)::

    python -m tests.secret_manager_stub --port 0 \\
        --secret api-keys=k1 --secret api-keys=k2 --secret admin-key=a

It prints ``listening on 127.0.0.1:PORT`` once ready. Point a function at it with
``SECRET_MANAGER_EMULATOR_HOST=127.0.0.1:PORT`` (see velocast.auth): the real client
cannot reach a plaintext endpoint through environment variables or client_options
alone, because its transport always builds a TLS channel.

Secrets are looked up by full name (``projects/P/secrets/S``) and then by the bare
id ``S``, so a stub started with short ids serves any project. The version in the
request is ignored: the stub always serves the current value as if it were
``latest``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Mapping

import grpc
from google.cloud import secretmanager_v1
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

try:
    import google_crc32c
except ImportError:  # pragma: no cover - optional, the client does not require it
    google_crc32c = None

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_types = secretmanager_v1.types

# Loopback tests stop and restart the server; gRPC's default reconnect backoff (1 s
# growing to 120 s) would keep a client failing long after the stub is back.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def client_for(address: str) -> secretmanager_v1.SecretManagerServiceClient:
    """A real SecretManagerServiceClient bound to a plaintext channel to `address`."""
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    transport = SecretManagerServiceGrpcTransport(channel=channel)
    return secretmanager_v1.SecretManagerServiceClient(transport=transport)


class SecretManagerStub:
    """In-memory AccessSecretVersion server on a loopback port.

    `secrets` maps secret name (full or bare id) to payload bytes and may be
    mutated while the server runs. `calls` lists the version names requested, so
    tests can count fetches. Set `fail_with` to a grpc.StatusCode to make every
    call fail with it.
    """

    def __init__(
        self,
        secrets: Mapping[str, str | bytes] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.secrets: dict[str, bytes] = {k: _as_bytes(v) for k, v in (secrets or {}).items()}
        self.host = host
        self.port = port
        self.calls: list[str] = []
        self.fail_with: grpc.StatusCode | None = None
        self._server: grpc.Server | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "SecretManagerStub":
        with self._lock:
            if self._server is not None:
                return self
            server = grpc.server(
                _executor(),
                handlers=[self._handler()],
                # Restarting on the same port right after a stop must not fail.
                options=(("grpc.so_reuseport", 1),),
            )
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
            if bound == 0:
                raise OSError(f"cannot bind {self.host}:{self.port}")
            self.port = bound
            server.start()
            self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; clients then see UNAVAILABLE (connection refused)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()

    def restart(self) -> "SecretManagerStub":
        """Serve again on the same port, so existing clients reconnect."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> str:
        if not self.port:
            raise RuntimeError("stub not started")
        return f"{self.host}:{self.port}"

    def client(self) -> secretmanager_v1.SecretManagerServiceClient:
        return client_for(self.address)

    def __enter__(self) -> "SecretManagerStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the RPC -------------------------------------------------------------
    def _handler(self) -> grpc.GenericRpcHandler:
        method = grpc.unary_unary_rpc_method_handler(
            self._access,
            request_deserializer=_types.AccessSecretVersionRequest.deserialize,
            response_serializer=_types.AccessSecretVersionResponse.serialize,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"AccessSecretVersion": method})

    def lookup(self, version_name: str) -> bytes | None:
        secret_name = version_name.split("/versions/", 1)[0]
        if secret_name in self.secrets:
            return self.secrets[secret_name]
        return self.secrets.get(secret_name.rsplit("/", 1)[-1])

    def _access(self, request, context: grpc.ServicerContext):
        self.calls.append(request.name)
        if self.fail_with is not None:
            context.abort(self.fail_with, f"stub configured to fail with {self.fail_with.name}")
        data = self.lookup(request.name)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
        payload = _types.SecretPayload(data=data)
        if google_crc32c is not None:
            payload.data_crc32c = google_crc32c.value(data)
        version = request.name
        if version.endswith("/versions/latest"):
            version = version[: -len("latest")] + "1"
        return _types.AccessSecretVersionResponse(name=version, payload=payload)


def _executor():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="secret-manager-stub")


def _parse_secrets(items: list[str]) -> dict[str, bytes]:
    secrets: dict[str, list[bytes]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--secret expects NAME=VALUE or NAME=@FILE, got {item!r}")
        if value.startswith("@"):
            with open(value[1:], "rb") as fh:
                data = fh.read()
        else:
            data = value.encode("utf-8")
        # Repeating a name adds a line, which is how a payload holds several keys.
        secrets.setdefault(name, []).append(data)
    return {name: b"\n".join(parts) for name, parts in secrets.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.secret_manager_stub",
        description="Loopback Secret Manager (AccessSecretVersion only) for local runs and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="secret id or projects/P/secrets/S; VALUE or @file; repeat a NAME for several lines",
    )
    args = parser.parse_args(argv)

    stub = SecretManagerStub(_parse_secrets(args.secret), host=args.host, port=args.port).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"listening on {stub.address}", flush=True)
    while not done.wait(1):
        pass
    stub.stop(grace=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
