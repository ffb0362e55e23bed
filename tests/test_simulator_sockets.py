"""The simulator's sockets: replies must not wait on Nagle's algorithm."""

from __future__ import annotations

import socket

from synth.serving import listening_socket


def test_accepted_connections_send_without_delay():
    # A reply's head and body are two writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms on Linux) and the configured latency is a lie.
    listener = listening_socket("127.0.0.1", 0)
    listener.setblocking(True)
    client = socket.create_connection(listener.getsockname())
    try:
        accepted, _ = listener.accept()
        with accepted:
            assert listener.proto == socket.IPPROTO_TCP  # asyncio sets NODELAY only then
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.close()
        listener.close()
