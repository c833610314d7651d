"""The one module that reaches into viser 1.1.1 (and the websockets server under it).

viser has no option to check a websocket handshake, nor to validate a GUI value before it
stores it and forwards it to every browser. :func:`start_guarded_server` adds both:

1. **Handshake**: viser passes its static-file handler to ``websockets.asyncio.server.serve``
   as ``process_request``. While the :class:`viser.ViserServer` starts, ``serve`` is
   wrapped so that this handler is preceded by an :class:`AccessPolicy` check; a refused
   request (page or websocket) gets ``403`` and never reaches viser, so it cannot receive
   a message or trigger a callback. The wrapper lives only for the start-up, under a lock,
   and touches no other caller of ``serve``.
2. **GUI values**: viser's ``GuiUpdateMessage`` handler is replaced by one that passes on
   only ``{"value": ...}`` (the stock client sends nothing else; viser would otherwise set
   any attribute of its internal state, such as the update callbacks) and only values that
   ``check_value`` accepts (see :mod:`render3d.viewer.controls`).
3. **Unused client messages**: the share-URL requests (they open a public tunnel through
   share.viser.studio) and file uploads (buffered in memory) are unregistered.

Each step checks that viser still looks as assumed and otherwise stops with a
:class:`Render3DError`, so a viser upgrade fails loudly at start-up (and in
``tests/test_viewer_security.py``) instead of serving an unchecked viewer.
"""

from __future__ import annotations

import contextlib
import http
import threading
from typing import Any, Callable, Iterator, Optional

import viser
import websockets.asyncio.server
from viser import _messages
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from render3d.errors import Render3DError
from render3d.viewer.access import AccessPolicy

ProcessRequest = Callable[[ServerConnection, Request], Optional[Response]]
CheckValue = Callable[[str, Any], Any]

#: The viser release this module was written and tested against (pinned in pyproject.toml).
VISER_VERSION = "1.1.1"

_SERVE_LOCK = threading.Lock()  # one guarded start-up at a time patches ``serve``


def control_id(handle: Any) -> str:
    """The id viser's messages use for a GUI ``handle`` (kept in ``_impl.uuid``)."""
    return str(handle._impl.uuid)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise Render3DError(
            f"viser {viser.__version__} is not the viser render3d was written for ({what}), so the viewer cannot "
            f"check what browsers send: install viser {VISER_VERSION}"
        )


def _checked_requests(policy: AccessPolicy, viser_handler: ProcessRequest) -> ProcessRequest:
    """viser's ``process_request``, preceded by ``policy`` (and setting the token cookie)."""

    def process_request(connection: ServerConnection, request: Request) -> Optional[Response]:
        websocket = any(v.lower() == "websocket" for v in request.headers.get_all("Upgrade"))
        refusal = policy.refusal(request.path, request.headers, websocket)
        if refusal is not None:
            return connection.respond(http.HTTPStatus.FORBIDDEN, f"render3d viewer: {refusal}\n")
        response = viser_handler(connection, request)
        cookie = policy.cookie_for(request.path)
        if response is not None and cookie is not None:
            response.headers["Set-Cookie"] = cookie
        return response

    return process_request


@contextlib.contextmanager
def _handshake_checked(policy: AccessPolicy) -> Iterator[list[bool]]:
    """While open, the websockets server viser starts checks each request with ``policy``.

    Yields a list that holds True once viser's server was wrapped.
    """
    original = websockets.asyncio.server.serve
    wrapped: list[bool] = []

    def serve(*args: Any, **kwargs: Any) -> Any:
        viser_handler = kwargs.get("process_request")
        if getattr(viser_handler, "__qualname__", "").startswith("WebsockServer._background_worker"):
            kwargs["process_request"] = _checked_requests(policy, viser_handler)  # type: ignore[arg-type]
            wrapped.append(True)
        return original(*args, **kwargs)

    with _SERVE_LOCK:
        websockets.asyncio.server.serve = serve  # type: ignore[assignment,misc]
        try:
            yield wrapped
        finally:
            websockets.asyncio.server.serve = original  # type: ignore[misc]


def _same(a: Any, b: Any) -> bool:
    """Whether an accepted value equals the one the browser sent (a tuple equals a list)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return bool(a == b)


def _check_gui_values(server: viser.ViserServer, check_value: CheckValue) -> None:
    """Let only checked ``{"value": ...}`` GUI updates reach viser."""
    websock = server._websock_server
    gui = server.gui
    viser_handler = gui._handle_gui_updates
    _require(viser_handler in websock._incoming_handlers.get(_messages.GuiUpdateMessage, []), "GUI update handler")

    def show_server_value(handle_id: str) -> None:
        """Tell the browsers the value the server holds (the sender shows its own until told)."""
        handle = gui._gui_input_handle_from_uuid.get(handle_id)
        if handle is not None and not handle._impl.is_button:
            websock.queue_message(_messages.GuiUpdateMessage(handle_id, {"value": handle.value}))

    async def checked(client_id: Any, message: _messages.GuiUpdateMessage) -> None:
        updates = message.updates
        if not isinstance(updates, dict) or set(updates) != {"value"} or not isinstance(message.uuid, str):
            return
        try:
            value = check_value(message.uuid, updates["value"])
        except ValueError:
            show_server_value(message.uuid)
            return
        await viser_handler(client_id, _messages.GuiUpdateMessage(message.uuid, {"value": value}))
        if not _same(value, updates["value"]):
            show_server_value(message.uuid)

    websock.unregister_handler(_messages.GuiUpdateMessage, viser_handler)
    websock.register_handler(_messages.GuiUpdateMessage, checked)


def _drop_unused_messages(server: viser.ViserServer) -> None:
    """Ignore share-URL requests (a public tunnel) and file uploads (memory): the viewer uses neither."""
    websock = server._websock_server
    unused = (_messages.ShareUrlRequest, _messages.ShareUrlDisconnect, _messages.FileTransferStartUpload, _messages.FileTransferPart)
    for message_cls in unused:
        _require(message_cls in websock._incoming_handlers, f"{message_cls.__name__} handler")
        websock.unregister_handler(message_cls)
    server.gui.configure_theme(show_share_button=False)


def start_guarded_server(host: str, port: int, label: str, policy: AccessPolicy, check_value: CheckValue) -> viser.ViserServer:
    """A :class:`viser.ViserServer` on ``host:port`` that serves only requests ``policy`` allows
    and accepts only GUI values ``check_value(control_id, value)`` returns (it raises
    ``ValueError`` to refuse one).

    Raises:
        Render3DError: the installed viser differs from the one this module hooks into.
        OSError: the server cannot listen.
    """
    with _handshake_checked(policy) as wrapped:
        server = viser.ViserServer(host=host, port=port, label=label, verbose=False)
    try:
        _require(bool(wrapped), "websocket handshake")
        _check_gui_values(server, check_value)
        _drop_unused_messages(server)
    except BaseException:
        server.stop()
        raise
    return server
