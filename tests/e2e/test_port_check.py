"""`make serve` right after `make demo`: the demo's ports still hold connections in
TIME_WAIT for about a minute; servers bind with SO_REUSEADDR, so the port check must
too, or it refuses a port the server could use."""

from __future__ import annotations

import contextlib
import socket

from velocast.dev.servers import port_free


def _listener() -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    return server


def test_a_port_in_time_wait_is_free_for_a_server():
    server = _listener()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the pair waits (TIME_WAIT)
    client.recv(1)
    client.close()
    server.close()
    assert port_free(port)
    with contextlib.closing(_listener()):
        pass  # and a server really can listen there


def test_a_port_with_a_listener_is_not_free():
    with contextlib.closing(_listener()) as server:
        assert not port_free(server.getsockname()[1])
