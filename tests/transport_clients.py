"""Raw-socket clients for the transport tests (tests/service/test_transport_*.py): requests that
stop part-way, as the attacks of issues 10 and 25 sent them, and the answer they get."""

from __future__ import annotations

import json
import socket
import time

RECORD = {"nom_du_compteur": "Totem 73 boulevard de Sébastopol S-N",
          "date_et_heure_de_comptage": "2024-10-15T08:00:00+02:00"}
VALID = json.dumps({"records": [RECORD]}, ensure_ascii=False).encode()
STALLED_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\n"
STALLED_CHUNKED = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"rec")


def post_head(path: str, length: int, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def send(port: int, data: bytes, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(data)
    return sock


def answer(sock: socket.socket, timeout: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and all it sent before; the
    seconds are `timeout` (and the bytes end with b"<open>") if it never closed it."""
    sock.settimeout(timeout)
    began, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except socket.timeout:
        data += b"<open>"
    except ConnectionResetError:
        data += b"<reset>"
    return time.monotonic() - began, data


def one_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict, bytes]:
    """The next response on a kept-alive connection (Content-Length framed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def status_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]
