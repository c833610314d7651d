"""``render3d data process`` before structure from motion: video frame choice, photos, bad input, Stages.call.

Everything here runs on tiny synthetic photos and videos (written with imageio's bundled
ffmpeg) and stops before pycolmap does any work, so the whole file takes a few seconds.
"""

from __future__ import annotations

import _thread
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

from render3d.cli import main
from render3d.process import sfm
from render3d.process.inputs import copy_photo, copy_photos, split_inputs
from render3d.process.stages import Stages
from render3d.process.video_frames import choose_frames, score_frames, sharpness, write_frames

#: Video frame size: both sides multiples of 16, so imageio's writer does not resize them.
HEIGHT, WIDTH = 128, 160
FRAMES = 40
#: Frames blurred in the panning video; each is in a two-frame window with a sharp neighbour.
BLURRED = (12, 27)

_EXIF_IFD, _FOCAL_35MM, _ORIENTATION, _MAKE, _MODEL = 0x8769, 0xA405, 0x0112, 0x010F, 0x0110


# ----------------------------------------------------------------------------- helpers

def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smoothed colour noise ``uint8 [height, width, 3]``: detail everywhere, no symmetry."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random((height, width, 3)), (1.5, 1.5, 0))
    return ((noise - noise.min()) / (noise.max() - noise.min()) * 255).astype(np.uint8)


def blur(frame: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """``frame`` out of focus (Gaussian blur in both image axes)."""
    return ndimage.gaussian_filter(frame, (sigma, sigma, 0))


def panning_frames(count: int = FRAMES, step: int = 3, blurred: tuple[int, ...] = ()) -> np.ndarray:
    """A camera panning ``step`` pixels a frame over a texture; the frames ``blurred`` out of focus."""
    scene = texture(HEIGHT, WIDTH + step * count)
    frames = np.stack([scene[:, step * t: step * t + WIDTH] for t in range(count)])
    for index in blurred:
        frames[index] = blur(frames[index])
    return frames


def still_frames(count: int = 30, seed: int = 1) -> np.ndarray:
    """A camera that never moves: one texture repeated, each frame with its own noise of +-2 grey levels."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-2, 3, (count, HEIGHT, WIDTH, 3))
    return np.clip(texture(HEIGHT, WIDTH).astype(int)[None] + noise, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """``frames uint8 [T, H, W, 3]`` encoded to ``path`` (H.264 for .mp4, through imageio-ffmpeg)."""
    iio.imwrite(path, frames, fps=fps)
    return path


def rotate_video(src: Path, dst: Path, degrees: int = 90) -> Path:
    """A stream copy of ``src`` with display rotation metadata ``degrees``, as a phone held upright writes."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-y", "-loglevel", "error", "-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(dst)],
                   check=True, capture_output=True)
    return dst


def save_photo(path: Path, size: tuple[int, int] = (64, 48), *, seed: int = 0, orientation: Optional[int] = None,
               focal_35mm: Optional[int] = None, make: Optional[str] = None, model: Optional[str] = None,
               smooth: bool = False) -> Path:
    """A JPEG of ``size = (width, height)`` with the given EXIF tags (none by default).

    ``smooth`` gives a blurry image whose JPEG re-encoding changes few grey levels.
    """
    width, height = size
    pixels = texture(height, width, seed)
    if smooth:
        pixels = blur(pixels, 4.0)
    exif = Image.Exif()
    if orientation is not None:
        exif[_ORIENTATION] = orientation
    if focal_35mm is not None:
        exif.get_ifd(_EXIF_IFD)[_FOCAL_35MM] = focal_35mm
    if make is not None:
        exif[_MAKE] = make
    if model is not None:
        exif[_MODEL] = model
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    return path


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as ``float [H, W, 3]`` grey levels."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


def run_process(capfd, out: Path, *args: str | Path) -> tuple[int, str]:
    """``render3d data process ARGS --out OUT --no-progress``: ``(exit status, stderr)`` (file descriptor level)."""
    code = main(["data", "process", *map(str, args), "--out", str(out), "--no-progress"])
    return code, capfd.readouterr().err


def assert_one_line_error(err: str, *fragments: str) -> None:
    """``err`` is one non-empty line ``error: ...`` holding every one of ``fragments``, without a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def leftovers(out: Path) -> list[Path]:
    """Working folders of a run for ``out`` left next to it (``.OUT.partial-*``, ``.OUT.old-*``)."""
    return sorted(out.parent.glob(f".{out.name}.partial-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))


# ----------------------------------------------------------------------------- videos

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """The test videos, written once: ``panning`` (with :data:`BLURRED` frames), ``rotated`` (its copy turned 90 degrees), ``still``."""
    folder = tmp_path_factory.mktemp("videos")
    panning = write_video(folder / "panning.mp4", panning_frames(blurred=BLURRED))
    return {
        "panning": panning,
        "rotated": rotate_video(panning, folder / "rotated.mp4"),
        "still": write_video(folder / "still.mp4", still_frames()),
    }


def test_sharpness_is_lower_for_a_blurred_image():
    """The sharpness score of a grey image drops when it is blurred, and is zero for a flat one."""
    gray = texture(HEIGHT, WIDTH)[..., 0] / 255.0
    assert sharpness(ndimage.gaussian_filter(gray, 2.0)) < 0.2 * sharpness(gray)
    assert sharpness(np.full((HEIGHT, WIDTH), 0.5)) == pytest.approx(0.0)


def test_score_frames_measures_every_frame(videos):
    """The first pass of an encoded video gives one score per frame, its size (width, height) and rate."""
    scores = score_frames(videos["panning"])
    assert len(scores.sharpness) == len(scores.thumbs) == FRAMES
    assert scores.size == (WIDTH, HEIGHT)
    assert scores.fps == pytest.approx(10.0)
    for index in BLURRED:  # the blurred frames survive encoding as the least sharp ones
        assert scores.sharpness[index] < 0.5 * np.median(scores.sharpness)


def test_choose_frames_keeps_the_sharp_neighbor_of_a_blurred_frame(videos):
    """With two-frame windows, a window holding a blurred frame gives its sharp neighbour, never the blurred one."""
    kept = choose_frames(score_frames(videos["panning"]), FRAMES // 2)
    assert 13 in kept and 26 in kept  # the sharp neighbours of 12 and 27, in windows [12, 14) and [26, 28)
    assert not set(BLURRED) & set(kept), kept
    assert kept == sorted(set(kept)), "in time order, no repeats"
    assert len(kept) == FRAMES // 2, "a panning camera gives no near-duplicates"


def test_a_still_camera_gives_one_frame(videos):
    """Frames of a camera that never moves (only sensor noise differs) are all near-duplicates of the first kept one."""
    scores = score_frames(videos["still"])
    assert len(scores.sharpness) == 30
    assert len(choose_frames(scores, 10)) == 1


def test_rotation_metadata_turns_the_frames_upright(videos, tmp_path):
    """A video with display rotation 90 is scored at the turned size, and its frames are written turned 90 degrees
    counter-clockwise (``np.rot90``) relative to the same frame of the unrotated video."""
    assert score_frames(videos["panning"]).size == (WIDTH, HEIGHT)
    assert score_frames(videos["rotated"]).size == (HEIGHT, WIDTH)

    frames = {}
    for name in ("panning", "rotated"):
        (tmp_path / name).mkdir()
        written = write_frames(videos[name], [5], tmp_path / name)
        assert written == [f"{name}_00005.jpg"]
        frames[name] = read_rgb(tmp_path / name / written[0])
    source, rotated = frames["panning"], frames["rotated"]
    assert source.shape == (HEIGHT, WIDTH, 3) and rotated.shape == (WIDTH, HEIGHT, 3)  # unturned: not even the same shape
    assert mean_abs_diff(np.rot90(source, 1), rotated) < 8.0
    assert mean_abs_diff(np.rot90(source, -1), rotated) > 15.0  # the other way round is far off


# ----------------------------------------------------------------------------- photos

def test_exif_orientation_is_applied(tmp_path):
    """A 64x48 JPEG with EXIF orientation 6 is written upright (48x64, as ImageOps.exif_transpose turns it), without the tag."""
    src = save_photo(tmp_path / "turned.jpg", (64, 48), orientation=6, smooth=True)
    image = copy_photo(src, tmp_path / "out.jpg")
    assert (image.width, image.height) == (48, 64)
    assert image.name == "out.jpg" and image.source == str(src)
    with Image.open(src) as original:
        expected = np.asarray(ImageOps.exif_transpose(original).convert("RGB"), dtype=np.float64)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.size == (48, 64)
        assert written.getexif().get(_ORIENTATION, 1) == 1  # a viewer must not turn it a second time
    assert mean_abs_diff(read_rgb(tmp_path / "out.jpg"), expected) < 3.0


@pytest.mark.parametrize("orientation", [None, 1])
def test_an_upright_photo_is_copied_byte_for_byte(tmp_path, orientation):
    """A photo without an orientation tag, or with orientation 1, is copied unchanged."""
    src = save_photo(tmp_path / "upright.jpg", orientation=orientation)
    image = copy_photo(src, tmp_path / "copy.jpg")
    assert (tmp_path / "copy.jpg").read_bytes() == src.read_bytes()
    assert (image.width, image.height) == (64, 48)
    assert image.focal is None


def test_focal_length_from_exif_35mm_equivalent(tmp_path):
    """EXIF FocalLengthIn35mmFilm = 26 gives a focal length of 26 / 36 of the longer side, in pixels."""
    src = save_photo(tmp_path / "phone.jpg", (64, 48), focal_35mm=26)
    with Image.open(src) as saved:  # the tag round-trips through Pillow
        assert saved.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_35MM) == 26
    assert copy_photo(src, tmp_path / "out.jpg").focal == pytest.approx(26 / 36 * 64)


def test_camera_groups_follow_size_and_camera(tmp_path):
    """Photos of one size from one camera share a group; another size, or another camera model, is another group."""
    def group(name: str, size: tuple[int, int], model: str = "X1") -> str:
        src = save_photo(tmp_path / f"{name}.jpg", size, make="Acme", model=model, focal_35mm=26)
        return copy_photo(src, tmp_path / f"out_{name}.jpg").group

    a, b = group("a", (64, 48)), group("b", (64, 48))
    assert a == b
    assert group("c", (80, 48)) != a
    assert group("d", (64, 48), model="X2") != a


def test_same_file_names_in_two_folders_get_unique_names(tmp_path):
    """Two photos called img.jpg in different folders are both kept, under different names, each with its own pixels."""
    sources = []
    for seed, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        sources.append(save_photo(tmp_path / folder / "img.jpg", seed=seed))
    photos, found_videos = split_inputs([tmp_path / "a", tmp_path / "b"])
    assert photos == sources and found_videos == []
    (tmp_path / "work").mkdir()
    images = copy_photos(photos, tmp_path / "work")
    assert len({im.name for im in images}) == 2
    for image, src in zip(images, sources):
        assert image.source == str(src)
        assert (tmp_path / "work" / image.name).read_bytes() == src.read_bytes()


def test_same_file_names_in_folders_of_the_same_name_get_unique_names(tmp_path):
    """day1/photos/img.jpg and day2/photos/img.jpg are both kept, under different names."""
    sources = []
    for seed, day in enumerate(("day1", "day2")):
        (tmp_path / day / "photos").mkdir(parents=True)
        sources.append(save_photo(tmp_path / day / "photos" / "img.jpg", seed=seed))
    (tmp_path / "work").mkdir()
    images = copy_photos(split_inputs([src.parent for src in sources])[0], tmp_path / "work")
    assert len({im.name for im in images}) == 2


# ----------------------------------------------------------------------------- bad input through the CLI

def _empty_folder(tmp: Path) -> tuple[list[Path], list[str]]:
    (tmp / "empty").mkdir()
    return [tmp / "empty"], [str(tmp / "empty")]


def _one_image(tmp: Path) -> tuple[list[Path], list[str]]:
    (tmp / "one").mkdir()
    save_photo(tmp / "one" / "a.jpg")
    return [tmp / "one"], ["gave 1"]  # that it names the folder is test_a_single_image_error_names_the_folder


def _unreadable_image(tmp: Path) -> tuple[list[Path], list[str]]:
    (tmp / "photos").mkdir()
    for seed in range(3):
        save_photo(tmp / "photos" / f"{seed}.jpg", seed=seed)
    (tmp / "photos" / "broken.jpg").write_bytes(b"not a jpeg at all " * 40)
    return [tmp / "photos"], [str(tmp / "photos" / "broken.jpg")]


def _truncated_video(tmp: Path) -> tuple[list[Path], list[str]]:
    whole = write_video(tmp / "whole.mp4", panning_frames(20)).read_bytes()
    (tmp / "cut.mp4").write_bytes(whole[: int(0.3 * len(whole))])
    return [tmp / "cut.mp4"], [str(tmp / "cut.mp4")]


def _still_video(tmp: Path) -> tuple[list[Path], list[str]]:
    write_video(tmp / "still.mp4", still_frames())
    return [tmp / "still.mp4"], [str(tmp / "still.mp4"), "barely moves"]


BAD_INPUTS: dict[str, Callable[[Path], tuple[list[Path], list[str]]]] = {
    "empty folder": _empty_folder,
    "single image": _one_image,
    "unreadable image": _unreadable_image,
    "truncated video": _truncated_video,
    "still camera": _still_video,
}


@pytest.fixture
def no_structure_from_motion(monkeypatch):
    """Fail the test if the run gets as far as feature extraction (bad input must be refused before)."""
    import pycolmap  # noqa: F401  (imported here so the timing below measures the run, not the import)

    def refuse(*args, **kwargs):
        pytest.fail("structure from motion started on bad input")

    for name in ("extract_features", "match_features", "map_images"):
        monkeypatch.setattr(sfm, name, refuse)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capfd, no_structure_from_motion):
    """Bad input exits 2 at once with one ``error:`` line naming it; no --out and no working folder are left."""
    inputs, fragments = BAD_INPUTS[case](tmp_path)
    out = tmp_path / "scene"
    start = time.perf_counter()
    code, err = run_process(capfd, out, *inputs)
    assert time.perf_counter() - start < 10.0
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not out.exists()
    assert leftovers(out) == []


def test_a_single_image_error_names_the_folder(tmp_path, capfd, no_structure_from_motion):
    """The error for a folder holding one photo names that folder."""
    inputs, _ = _one_image(tmp_path)
    code, err = run_process(capfd, tmp_path / "scene", *inputs)
    assert code == 2
    assert_one_line_error(err, str(inputs[0]))


def test_existing_out_is_refused_and_left_untouched(tmp_path, capfd, no_structure_from_motion):
    """An --out that exists is refused (the message points to --overwrite) and its contents stay as they were."""
    inputs, _ = _unreadable_image(tmp_path)  # never read: the --out check comes first
    out = tmp_path / "scene"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run_process(capfd, out, *inputs)
    assert code == 2
    assert_one_line_error(err, str(out), "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert leftovers(out) == []


@pytest.mark.parametrize("option, value", [("--frames", "1"), ("--matching", "bogus"), ("--camera-model", "FOO")])
def test_bad_option_value_is_one_line_exit_2(option, value, tmp_path, capfd, no_structure_from_motion):
    """An option value no run can use exits 2 with one line naming the option and the value."""
    (tmp_path / "photos").mkdir()
    for seed in range(3):
        save_photo(tmp_path / "photos" / f"{seed}.jpg", seed=seed)
    out = tmp_path / "scene"
    code, err = run_process(capfd, out, tmp_path / "photos", option, value)
    assert code == 2
    assert_one_line_error(err, option, value)
    assert not out.exists()
    assert leftovers(out) == []


# ----------------------------------------------------------------------------- Stages.call

class FakeToken:
    """Stands in for a pycolmap cancellation token: ``cancel()`` records the call and releases the waiting work."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


def test_call_returns_the_value_computed_in_a_worker_thread():
    """Stages.call runs the function in another thread and returns its value."""
    caller = threading.get_ident()
    assert Stages.call(lambda a, b=0: (a + b, threading.get_ident() != caller), 2, b=3) == (5, True)


def test_call_reraises_the_workers_exception_in_the_caller():
    """An exception raised by the function in the worker is raised, the same object, by Stages.call."""
    error = ValueError("native call failed")

    def fail() -> None:
        raise error

    with pytest.raises(ValueError) as raised:
        Stages.call(fail, token=FakeToken())
    assert raised.value is error


def interrupt_during(work, token) -> None:
    """``Stages.call(work, token=token)`` with Ctrl-C (KeyboardInterrupt in the main thread) 0.3 s in; it must propagate.

    Python's own Ctrl-C handler is put in place for the call: a test run started as a background job of a
    non-interactive shell inherits SIGINT ignored, and then ``interrupt_main`` does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            Stages.call(work, token=token)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


def test_keyboard_interrupt_cancels_the_token_and_propagates():
    """Ctrl-C while the worker runs cancels the token, lets the worker stop, and goes on as KeyboardInterrupt."""
    token = FakeToken()
    finished = threading.Event()

    def native_work() -> str:
        # Waits for the cancellation (a long native call that notices its token); the timeout only
        # keeps a broken Stages.call from hanging the test run.
        stopped = token.cancelled.wait(5.0)
        finished.set()
        return "cancelled" if stopped else "ran to the end"

    start = time.perf_counter()
    interrupt_during(native_work, token)
    assert token.cancelled.is_set()
    assert finished.wait(1.0), "the worker was given its grace period to stop"
    assert time.perf_counter() - start < 4.0, "the interrupt was acted on at once, not after the work's own timeout"


def test_keyboard_interrupt_waits_for_the_cancelled_worker_to_stop():
    """After Ctrl-C the interrupt goes on only once the cancelled worker has stopped (within the grace period)."""
    token = FakeToken()
    stopped = threading.Event()

    def native_work() -> None:
        token.cancelled.wait(5.0)
        time.sleep(1.0)  # a native call takes a moment to unwind after noticing its cancellation
        stopped.set()

    interrupt_during(native_work, token)
    assert token.cancelled.is_set()
    assert stopped.is_set(), "KeyboardInterrupt went on while the worker was still running"
