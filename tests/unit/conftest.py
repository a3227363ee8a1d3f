"""The unit tier: velocast's modules, the scripts and the Terraform and workflow files,
checked in this process or through local subprocesses: no server, no browser, no
network. A test here that opens an internet socket fails, naming where it belongs
(tests/service for the functions over HTTP, tests/e2e for fake-gcs-server, the loopback
portal and the daily loop). The session's trained store (tests/conftest.py) is allowed:
it is a folder.
"""

from __future__ import annotations

import socket

import pytest

_NETWORK = (socket.AF_INET, socket.AF_INET6)


def _refused(method):
    def guarded(sock, *args, **kwargs):
        if sock.family in _NETWORK:
            raise AssertionError(f"a unit test called socket.{method.__name__}{args!r}: a test "
                                 "that needs a server or the network is tests/service or tests/e2e")
        return method(sock, *args, **kwargs)

    return guarded


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refused(getattr(socket.socket, name)))
