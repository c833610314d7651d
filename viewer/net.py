"""Where the viewer listens: check the host, and fall back to a free port when the asked one is taken."""

from __future__ import annotations

import errno
import socket

from render3d.errors import Render3DError


def _bind(host: str, port: int) -> int:
    """Bind (and release) a TCP socket; returns the port it got."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(address)
        return int(sock.getsockname()[1])


def choose_port(host: str, port: int) -> tuple[int, bool]:
    """The port to serve on and whether it differs from ``port`` (which was taken).

    Raises:
        Render3DError: ``host`` cannot be resolved or is not an address of this machine.
    """
    if not 0 <= port <= 65535:
        raise Render3DError(f"--port {port} is not a TCP port: use 0-65535 (0 picks a free one)")
    try:
        got = _bind(host, port)
        return got, port not in (0, got)
    except socket.gaierror:
        raise Render3DError(f"--host {host!r} is not a known host name or address: use 127.0.0.1 (this machine) or 0.0.0.0 (every interface)") from None
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise Render3DError(f"cannot listen on {host}:{port} ({exc.strerror}): use 127.0.0.1 or an address of this machine with --host") from None
    return _bind(host, 0), True
