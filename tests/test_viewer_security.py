"""The viewer against hostile browsers and networks, without a browser: raw websocket and
HTTP clients on 127.0.0.1 (servers bound to 127.0.0.1 or 0.0.0.0, port 0)."""

from __future__ import annotations

import http.client
import math
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from helpers import wait_for
import viser
import zstandard
from websockets.exceptions import InvalidStatus
from websockets.frames import OP_BINARY, Frame
from websockets.sync.client import ClientConnection, connect

from render3d.errors import Render3DError
from render3d.viewer.access import AccessPolicy, is_loopback
from render3d.viewer.camera import CameraPose, pose_of
from render3d.viewer.markup import escape_markdown
from render3d.viewer.render_loop import ViewSettings
from render3d.viewer.run_files import plain_name
from render3d.viewer.viser_guard import control_id

PROTOCOL = f"viser-v{viser.__version__}"
XSS = "<img src=x onerror=alert(1)>"


# ----- a raw viser client -------------------------------------------------------------------
def open_socket(viewer, origin: str | None = "same", path: str = "/", cookie: str | None = None) -> ClientConnection:
    """A websocket to ``viewer`` through 127.0.0.1; ``origin="same"`` sends the page's own origin."""
    if origin == "same":
        origin = f"http://127.0.0.1:{viewer.port}"
    headers = {"Cookie": cookie} if cookie else None
    return connect(f"ws://127.0.0.1:{viewer.port}{path}", origin=origin, subprotocols=[PROTOCOL],  # type: ignore[arg-type,list-item]
                   additional_headers=headers, proxy=None, open_timeout=5, max_size=None, max_queue=None, compression=None)


def message_types(ws: ClientConnection, seconds: float = 1.0, until: frozenset[str] = frozenset()) -> set[str]:
    """Types of the viser messages that arrive within ``seconds``, or until those in ``until`` came
    (the frame layout is viser's ``_message_producer``)."""
    types: set[str] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (until and until <= types):
        try:
            frame = ws.recv(timeout=max(end - time.monotonic(), 0.01))
        except TimeoutError:
            break
        size, packed = int.from_bytes(frame[:8], "little"), int.from_bytes(frame[8:16], "little")
        inner = zstandard.ZstdDecompressor().decompress(frame[16 : 16 + packed], max_output_size=size)
        types |= {m["type"] for m in msgspec.msgpack.decode(inner)["messages"]}
    return types


def encode(kind: str, **fields) -> bytes:
    return msgspec.msgpack.encode({"type": kind, **fields})


def camera_message(aspect: float = 100.0) -> bytes:
    """A camera 3 units in front of the scene; a wide, flat canvas keeps full-size renders cheap."""
    return encode("ViewerCameraMessage", wxyz=(1.0, 0.0, 0.0, 0.0), position=(0.0, 0.0, -3.0), fov=0.8, near=0.01, far=100.0,
                  image_height=10, image_width=int(10 * aspect), look_at=(0.0, 0.0, 0.0), up_direction=(0.0, -1.0, 0.0))


def set_value(ws: ClientConnection, handle, value) -> None:
    """What the browser sends when a control changes (a button click sends True)."""
    ws.send(encode("GuiUpdateMessage", uuid=control_id(handle), updates={"value": value}))


def refused(viewer, **kwargs) -> bool:
    try:
        with open_socket(viewer, **kwargs) as ws:
            message_types(ws, 0.3)
    except InvalidStatus as exc:
        return exc.response.status_code == 403
    return False


def http_get(viewer, path: str = "/", host: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=5)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{viewer.port}")
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ----- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trainer(tiny_scene, tmp_path_factory):
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer

    config = TrainConfig(steps=1, out=str(tmp_path_factory.mktemp("security") / "run"), save_every=0, progress=False, backend="torch")
    return Trainer(config, SplatConfig(init_points=300, sh_degree=0), scene=tiny_scene)


def _viewer(trainer, host: str):
    from render3d.viewer.server import Viewer
    from render3d.viewer.source import from_trainer

    viewer = Viewer(from_trainer(trainer), host=host, port=0, settings=ViewSettings(max_side=32), verbose=False)
    viewer.path_editor.add_keyframe(None, pose_of(trainer.scene.train.cameras, 0))
    return viewer


@pytest.fixture(scope="module")
def local(trainer):
    """A viewer on loopback, as ``render3d view`` starts by default."""
    viewer = _viewer(trainer, "127.0.0.1")
    yield viewer
    viewer.stop()


@pytest.fixture(scope="module")
def exposed(trainer):
    """A viewer on every interface (``--host 0.0.0.0``), reached through 127.0.0.1."""
    viewer = _viewer(trainer, "0.0.0.0")
    yield viewer
    viewer.stop()


# ----- origin and token -----------------------------------------------------------------------
def test_a_foreign_origin_is_refused_before_any_message(local):
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{local.port + 1}", f"http://localhost:{local.port}"):
        assert refused(local, origin=origin), origin
    assert refused(local, origin=None)  # not a browser, and no token
    with open_socket(local, origin=None, path=f"/?token={local.access.token}") as ws:  # a script with the token
        assert "GuiSliderMessage" in message_types(ws, until=frozenset({"GuiSliderMessage"}))
    with open_socket(local) as ws:  # the page's own origin: a browser on this machine
        expected = frozenset({"GuiSliderMessage", "CameraFrustumMessage"})
        assert expected <= message_types(ws, until=expected)


def test_loopback_serves_only_loopback_host_names(local):
    assert http_get(local).status == 200
    assert http_get(local, host=f"localhost:{local.port}").status == 200
    # a page whose domain name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own Host
    assert http_get(local, host=f"evil.example:{local.port}").status == 403


def test_off_loopback_only_token_holders_get_in(exposed):
    token = exposed.access.token
    assert exposed.url == f"http://localhost:{exposed.port}/?token={token}"
    assert refused(exposed)  # the page's own origin is not enough
    assert refused(exposed, path="/?token=wrong")
    assert refused(exposed, cookie=f"{exposed.access.cookie_name}=wrong")
    assert http_get(exposed).status == 403
    page = http_get(exposed, f"/?token={token}")  # the printed URL
    assert page.status == 200
    cookie = page.getheader("Set-Cookie")
    assert cookie.startswith(f"{exposed.access.cookie_name}={token};") and "HttpOnly" in cookie
    with open_socket(exposed, cookie=cookie.split(";")[0]) as ws:  # the page's websocket carries the cookie
        assert "GuiSliderMessage" in message_types(ws, until=frozenset({"GuiSliderMessage"}))
    with open_socket(exposed, origin=None, path=f"/?token={token}") as ws:
        assert "GuiSliderMessage" in message_types(ws, until=frozenset({"GuiSliderMessage"}))


def test_off_loopback_a_warning_is_printed(trainer, capfd):
    from render3d.viewer.server import Viewer
    from render3d.viewer.source import from_trainer

    viewer = Viewer(from_trainer(trainer), host="0.0.0.0", port=0, verbose=True)
    try:
        out, err = capfd.readouterr()
        assert f"{viewer.url} in a browser" in out and "?token=" in out
        assert "warning" in err and "network" in err and len(err.strip().splitlines()) == 1
    finally:
        viewer.stop()


def test_a_refused_client_cannot_trigger_callbacks(exposed, trainer):
    """Frames sent right behind a refused handshake (pipelined) reach nothing."""
    pause = exposed.training_panel.pause_button
    click = encode("GuiUpdateMessage", uuid=control_id(pause), updates={"value": True})
    frames = b"".join(Frame(OP_BINARY, data).serialize(mask=True) for data in (camera_message(), click))
    handshake = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{exposed.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n"
        f"Origin: http://127.0.0.1:{exposed.port}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", exposed.port), timeout=5) as sock:
        sock.sendall(handshake + frames)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403")
    time.sleep(0.3)
    assert not trainer.paused and exposed.clients == {}


def test_access_policy_rules():
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert not AccessPolicy.for_host("127.0.0.1", 8080).token_required
    assert AccessPolicy.for_host("0.0.0.0", 8080).token_required and AccessPolicy.for_host("::", 8080).token_required
    assert AccessPolicy.for_host("0.0.0.0", 1).token != AccessPolicy.for_host("0.0.0.0", 1).token


# ----- files the browser names ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["../escape", "../../escape.json", "/tmp/abs.json", "sub/name", ".hidden", "..", "a\\b", "x" * 65, "", XSS])
def test_path_file_names_other_than_plain_names_are_refused(name):
    with pytest.raises(Render3DError):
        plain_name(name, ".json")


def test_plain_names_get_the_suffix():
    assert plain_name(" my-path_2 ", ".json") == "my-path_2.json"
    assert plain_name("orbit.v2.json", ".json") == "orbit.v2.json"


def test_the_path_editor_writes_and_reads_only_inside_the_run_folder(local, tmp_path):
    editor, run_dir = local.path_editor, local.content.run_dir
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    before = files_under(run_dir.parent) | files_under(tmp_path)
    with open_socket(local) as ws:  # even an allowed browser
        ws.send(camera_message())
        for name in (str(outside), "../outside", "../../outside.json", ".camera_path", "sub/x"):
            set_value(ws, editor.file, name)
            assert wait_for(lambda: editor.file.value == name)
            for button in (editor.save, editor.load, editor.render):
                editor.status.content = ""
                set_value(ws, button, True)
                assert wait_for(lambda: "error" in editor.status.content), (name, button.label)
    assert outside.read_text() == "{}"
    assert files_under(run_dir.parent) | files_under(tmp_path) == before  # nothing written, anywhere
    editor.file.value = "camera_path"
    saved = editor.save_file()
    assert saved == run_dir / "paths" / "camera_path.json"
    editor.file.value = "missing"
    editor._guard(editor.load_file)
    assert "no saved path named missing" in editor.status.content


def test_typed_names_are_escaped_in_the_panels_markdown(local):
    editor = local.path_editor
    editor.file.value = XSS
    editor._guard(editor.save_file)
    status = editor.status.content
    assert "error" in status and "<img" not in status and "&lt;img src" in status and "&gt;" in status
    assert escape_markdown("[a](javascript:alert(1))\n# x") == r"\[a\]\(javascript\:alert\(1\)\) \# x"
    assert escape_markdown("a & \"b\" 'c'") == "a &amp; &quot;b&quot; &#x27;c&#x27;"


# ----- values from the browser ----------------------------------------------------------------
def test_out_of_range_values_are_clamped_or_refused_and_rendering_goes_on(local):
    render, editor, training = local.render_panel, local.path_editor, local.training_panel
    with open_socket(local) as ws:
        ws.send(camera_message())
        assert wait_for(lambda: len(local.clients) == 1)
        (client,) = local.clients.values()
        refusable = (editor.fov, training.balance, training.redraw, render.mode, render.background)
        before = [h.value for h in refusable]
        try:
            set_value(ws, render.max_side, 100000)
            set_value(ws, editor.seconds, 1e9)
            set_value(ws, editor.fps, -5)
            set_value(ws, editor.fov, math.nan)
            set_value(ws, editor.width, 1e12)
            set_value(ws, training.balance, math.inf)
            set_value(ws, training.redraw, "soon")
            set_value(ws, render.mode, "no-such-mode")
            set_value(ws, render.background, [255] * 1000)
            set_value(ws, local.scene_context.crop_min, [math.nan, 0.0, 0.0])
            assert wait_for(lambda: local.settings.max_side == 2048)
            assert wait_for(lambda: editor.seconds.value == 600.0 and editor.fps.value == 1 and editor.width.value == 4096)
            time.sleep(0.3)
            assert [h.value for h in refusable] == before
            assert all(math.isfinite(v) for v in local.scene_context.crop_min.value)
            assert "GuiUpdateMessage" in message_types(ws, until=frozenset({"GuiUpdateMessage"}))  # the sender is shown the server's values again
            assert wait_for(lambda: client.last_side == 2048, timeout=30)  # the clamped size renders ...
            sent = client.frames_sent
            client.invalidate()
            assert wait_for(lambda: client.frames_sent > sent, timeout=30)  # ... and so does the next frame
            assert len(editor.camera_path().poses()[0]) == 600  # 600 s at 1 fps, not 1e9 s
        finally:
            render.max_side.value = 32
            editor.seconds.value, editor.fps.value, editor.width.value = 4.0, 30, 64
    assert client.last_error is None


def test_only_value_updates_reach_viser(local):
    """viser would set any attribute of a control's state, its update callbacks included."""
    redraw = local.training_panel.redraw
    with open_socket(local) as ws:
        ws.send(camera_message())
        assert wait_for(lambda: len(local.clients) == 1)
        ws.send(encode("GuiUpdateMessage", uuid=control_id(redraw), updates={"update_cb": [], "value": 7.0}))
        ws.send(encode("GuiUpdateMessage", uuid=control_id(redraw), updates={"max": 1e9}))
        set_value(ws, redraw, 9.0)
        assert wait_for(lambda: local.training_refresh_seconds == 9.0)
    assert redraw.max == 60.0 and redraw._impl.update_cb
    redraw.value = 5.0


def test_every_control_has_a_rule_and_unused_messages_are_dropped(local):
    """Fails when a control is added without :class:`Controls`, or when viser changes what is hooked."""
    from viser import _messages

    handles = local.server.gui._gui_input_handle_from_uuid
    assert len(handles) > 20
    without_rule = [type(h).__name__ for uuid, h in handles.items() if local.controls.rule(uuid) is None]
    assert without_rule == ["GuiProgressBarHandle"]  # shown, not set: the browser may not change it
    registered = local.server._websock_server._incoming_handlers
    assert not registered.get(_messages.ShareUrlRequest) and not registered.get(_messages.FileTransferStartUpload)


def test_browser_cameras_are_bounded():
    wide = SimpleNamespace(wxyz=(1, 0, 0, 0), position=(0, 0, 0), fov=1e9, aspect=1e9)
    pose = CameraPose.from_handle(wide)
    assert pose.fov < math.pi and pose.aspect == 100.0 and pose.size_for(512) == (512, 5)
    for bad in (dict(fov=math.nan), dict(position=(math.inf, 0, 0)), dict(wxyz=(0, 0, 0, 0)), dict(wxyz=(1, 0, 0))):
        with pytest.raises(Render3DError, match="unusable camera"):
            CameraPose.from_handle(SimpleNamespace(**{**vars(wide), **bad}))
