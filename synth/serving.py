"""Listening sockets for synth's own servers (the simulator, the review page)."""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A bound, listening, non-blocking TCP socket; port 0 picks a free port, which
    ``getsockname()`` then tells before the server starts.

    IPPROTO_TCP is named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto
    says TCP. Without it a reply's head and body go out as two writes, Nagle holds the
    body until the client's delayed ACK (40 ms), and every reply after a connection's
    first takes 40 ms longer. The backlog is large because hundreds of clients connect
    at once at the start of a benchmark.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
