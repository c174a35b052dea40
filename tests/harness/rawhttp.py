"""Minimal HTTP/1.1 (raw bytes) and HTTP/2 cleartext clients for malformed-input tests.

Real clients refuse to send most of what these tests need (CR/LF in headers, conflicting
lengths, odd chunking), so requests are written byte by byte.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _read_until_closed_or_complete(sock: socket.socket) -> bytes:
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep and head.startswith(b"HTTP/1.1 1"):
            data = rest  # an interim 1xx (100 Continue); the real response follows
            continue
        if sep:
            hdrs = head.lower()
            if b"content-length:" in hdrs:
                n = int(hdrs.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    return data
            elif b"transfer-encoding: chunked" in hdrs and rest.endswith(b"0\r\n\r\n"):
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return out


def http1(port: int, raw: bytes, timeout: float = 10.0) -> Reply:
    """Sends raw bytes; returns the first response (status 0 when the connection closed first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            data = _read_until_closed_or_complete(s)
        except ConnectionResetError:
            data = b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or not lines[0].startswith(b"HTTP/"):
        return Reply(0)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode(errors="replace")
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Reply(int(lines[0].split()[1]), headers, body)


def h2c(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"",
        timeout: float = 10.0) -> Reply:
    """One request over HTTP/2 with prior knowledge."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                                                       normalize_outbound_headers=False))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"),
                                (":authority", "localhost")] + headers, end_stream=not body)
        s.sendall(conn.data_to_send())
        sent = 0
        reply = Reply(0)
        done = False
        while not done:
            while sent < len(body):
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = body[sent:sent + window]
                sent += len(piece)
                conn.send_data(sid, piece, end_stream=sent >= len(body))
                s.sendall(conn.data_to_send())
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    hs = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                          for k, v in ev.headers}
                    reply.status = int(hs.pop(":status"))
                    reply.headers = hs
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    reply.body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    done = True
            s.sendall(conn.data_to_send())
        return reply
