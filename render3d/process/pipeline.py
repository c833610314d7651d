"""``process_capture``: photos and videos in, a posed scene folder out (see the package docstring)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.files import output_error

from . import orient, output, reuse, sfm
from .inputs import CaptureImage, copy_photos, split_inputs
from .stages import Stages
from .video_frames import choose_frames, score_frames, write_frames

#: Below this share of registered images a warning says the scene may be incomplete.
WARN_REGISTERED_SHARE = 0.8


@dataclass
class ProcessConfig:
    """Options of ``render3d data process`` (CLI: ``--NAME``).

    Args:
        out (str): The scene folder to write; refused when it exists, unless ``overwrite``. Required: the default
            fails :meth:`validate`. Default: "".
        frames (int): Frames kept per video: the sharpest of as many equal windows of time, fewer when the camera
            stood still. Default: 150.
        max_image_size (int): SIFT runs on images at most this many pixels on the longer side (the images written
            keep their full size). Default: 1600.
        matching (str): ``exhaustive`` (every pair of images), ``sequential`` (each image with its neighbours in name /
            time order; no loop closure: that needs a vocabulary tree download) or ``auto`` (exhaustive up to 60
            images, else sequential). Default: "auto".
        mapper (str): ``incremental`` (COLMAP) or ``global`` (GLOMAP). Default: "incremental".
        camera_model (str): COLMAP camera model estimated (``SIMPLE_PINHOLE``, ``PINHOLE``, ``SIMPLE_RADIAL``,
            ``RADIAL`` or ``OPENCV``); the images are undistorted to pinhole cameras afterwards. Default:
            "SIMPLE_RADIAL".
        overwrite (bool): Replace an existing ``out`` (only once the new one is complete); its features and matches
            are reused when the images and feature settings are the same (:mod:`.reuse`). Default: False.
        threads (int): CPU threads for features, matching and mapping; -1 uses every core. Default: -1.
        seed (int): Random seed of the mapper (the same seed gives the same scene). Default: 0.
        progress (bool): Show a progress bar per stage. Default: True.

    Examples:
        >>> from render3d.process import ProcessConfig, process_capture
        >>> report = process_capture(["my_video.mp4"], ProcessConfig(out="scenes/mine"))  # doctest: +SKIP
        >>> report.registered, report.images  # doctest: +SKIP
        (148, 150)
    """

    out: str = option("scene folder to write (refused when it exists, unless --overwrite)", default="")
    frames: int = option("frames kept per video: the sharpest of as many equal windows of time (fewer when the camera stood still)", default=150)
    max_image_size: int = option("longer image side, in pixels, that features are found at (images keep their size)", default=1600)
    matching: str = option("auto (exhaustive up to 60 images, else sequential), exhaustive (every pair) or sequential "
                           "(neighbours in name/time order; no loop closure: that needs a vocabulary tree download)", default="auto")
    mapper: str = option("incremental (COLMAP) or global (GLOMAP)", default="incremental")
    camera_model: str = option("camera model to estimate: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV "
                               "(images are undistorted to pinhole afterwards)", default="SIMPLE_RADIAL")
    overwrite: bool = option("replace an existing --out folder (only once the new scene is complete); its features and "
                             "matches are reused when the images and feature options are the same", default=False)
    threads: int = option("CPU threads for structure from motion; -1: every core", default=-1)
    seed: int = option("random seed of the mapper; the same seed gives the same scene", default=0)
    progress: bool = option("show a progress bar per stage", default=True)

    def validate(self) -> None:
        """One-line errors for values no run can use."""
        checks = [
            ("out", bool(self.out), "a folder path"),
            ("frames", self.frames >= 3, "a whole number >= 3"),
            ("max-image-size", self.max_image_size >= 64, "a whole number >= 64"),
            ("matching", self.matching in sfm.MATCHERS, " or ".join(sfm.MATCHERS)),
            ("mapper", self.mapper in sfm.MAPPERS, " or ".join(sfm.MAPPERS)),
            ("camera-model", self.camera_model in sfm.CAMERA_MODELS, ", ".join(sfm.CAMERA_MODELS)),
            ("threads", self.threads == -1 or self.threads >= 1, "-1 or a whole number >= 1"),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise Render3DError(f"--{name} {getattr(self, name.replace('-', '_'))!r} is not valid: use {wanted}")

    def sfm_options(self) -> sfm.SfmOptions:
        """The structure-from-motion part of these options."""
        return sfm.SfmOptions(self.matching, self.mapper, self.camera_model, self.max_image_size, self.threads, self.seed)


@dataclass
class ProcessReport:
    """What a processing run did (also written to ``OUT/process.json``)."""

    out: str
    images: int
    registered: int
    points: int
    matcher: str
    mapper: str
    reprojection_error: float
    seconds: dict[str, float]
    videos: dict[str, dict[str, int]] = field(default_factory=dict)
    photos: int = 0
    unregistered: list[str] = field(default_factory=list)
    reused_features: bool = False


def claim_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite``; refuse a file in its place always."""
    if out.is_file():
        raise Render3DError(f"--out {out} is a file; choose a folder path")
    if out.exists() and not overwrite:
        raise Render3DError(f"{out} already exists; choose another --out or pass --overwrite to replace it")


def _video_frames(stages: Stages, videos: Sequence[Path], count: int, folder: Path) -> tuple[list[CaptureImage], dict[str, dict[str, int]]]:
    """Frames chosen from each video (one camera group per video) and, per video, frames read and kept."""
    images: list[CaptureImage] = []
    summary: dict[str, dict[str, int]] = {}
    for video in videos:
        with stages.stage(f"read {video.name}"[:24], unit="frame") as bar:
            scores = score_frames(video, tick=lambda: bar.update(1))
        kept = choose_frames(scores, count)
        if len(kept) < sfm.MIN_REGISTERED:
            raise Render3DError(f"video {video}: the camera barely moves ({len(kept)} distinct frame(s) of {len(scores.sharpness)}); "
                                "film while walking around the subject so it is seen from many places")
        with stages.stage("write frames", total=len(kept), unit="frame") as bar:
            names = write_frames(video, kept, folder, tick=lambda: bar.update(1))
        width, height = scores.size
        images += [CaptureImage(name, f"{video}#frame {i}", width, height, group=f"video {video}") for name, i in zip(names, kept)]
        summary[str(video)] = {"frames": len(scores.sharpness), "kept": len(kept)}
    return images, summary


def _gather(stages: Stages, inputs: Sequence[str | Path], config: ProcessConfig, folder: Path) -> tuple[list[CaptureImage], dict, int]:
    """Every input image in ``folder``; ``(images, per-video summary, photo count)``."""
    photos, videos = split_inputs(inputs)
    images, summary = _video_frames(stages, videos, config.frames, folder)
    if photos:
        with stages.stage("photos", total=len(photos)) as bar:
            images += copy_photos(photos, folder, tick=lambda: bar.update(1))
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        clash = next(n for n in names if names.count(n) > 1)
        raise Render3DError(f"two inputs give the image name {clash}; rename one of them")
    if len(images) < sfm.MIN_REGISTERED:
        given = ", ".join(str(i) for i in inputs)
        raise Render3DError(f"structure from motion needs at least {sfm.MIN_REGISTERED} photos or video frames; "
                            f"{given} gave {len(images)}: add photos of the subject from other places")
    return images, summary, len(photos)


def _publish(scene: Path, out: Path) -> None:
    """Rename the finished ``scene`` folder to ``out``, replacing an old ``out`` only after the rename."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(scene, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(scene, out)


def process_capture(inputs: Sequence[str | Path], config: ProcessConfig) -> ProcessReport:
    """Turn photos and videos into a posed scene folder at ``config.out`` (see the package docstring).

    Args:
        inputs: photo files, video files, or folders holding them (not recursive).
        config: the options; ``config.out`` is the folder written.

    Returns:
        The :class:`ProcessReport`. Bad input or a failed reconstruction raises a one-line
        Render3DError; nothing is left at ``config.out`` unless the run completes.
    """
    import pycolmap

    config.validate()
    out = Path(config.out).expanduser()
    claim_output(out, config.overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise output_error(out, exc) from None
    stages = Stages(config.progress)
    try:
        frames_dir, colmap_dir, scene = work / "input", work / "scene" / "colmap", work / "scene"
        frames_dir.mkdir()
        colmap_dir.mkdir(parents=True)
        images, videos, n_photos = _gather(stages, inputs, config, frames_dir)
        sfm._quiet_colmap(colmap_dir / "colmap-")
        options = config.sfm_options()
        database = colmap_dir / "database.db"
        matcher = sfm.matcher_for(options, len(images))
        wanted = reuse.fingerprint(images, frames_dir, options, matcher)
        reused = config.overwrite and reuse.restore(out / "colmap", colmap_dir, wanted)
        if not reused:
            sfm.extract_features(stages, database, frames_dir, images, options)
            sfm.match_features(stages, database, len(images), options)
        reuse.save(colmap_dir, wanted)
        index, model = sfm.map_images(stages, database, frames_dir, colmap_dir / "sparse", len(images), options)
        registered = model.num_reg_images()
        if registered < WARN_REGISTERED_SHARE * len(images):
            warnings.warn(f"only {registered} of {len(images)} images registered; the scene may be incomplete "
                          f"(the unregistered ones are listed in {out / 'process.json'})", stacklevel=2)
        undistorted = sfm.undistort(stages, colmap_dir / "sparse" / str(index), frames_dir, work / "undistorted", registered, options.threads)
        final = pycolmap.Reconstruction(str(undistorted / "sparse"))
        sizes = sorted({(c.width, c.height) for c in final.cameras.values()})
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sizes)
            warnings.warn(f"the registered images have {len(sizes)} sizes ({shown}); render3d trains on one size: process the "
                          "photos of each size (or each video) into its own scene", stacklevel=2)
        _, c2w = output.cameras_to_world(final)
        xyz, _ = output.sparse_points(final)
        transform = orient.orientation_transform(c2w, xyz)
        names = {im.name for im in final.images.values()}
        report = ProcessReport(
            out=str(out), images=len(images), registered=registered, points=final.num_points3D(), matcher=matcher,
            mapper=config.mapper, reprojection_error=float(model.compute_mean_reprojection_error()), seconds=stages.seconds,
            videos=videos, photos=n_photos, unregistered=sorted(im.name for im in images if im.name not in names),
            reused_features=reused,
        )
        output.write_scene(stages, final, transform, undistorted / "images", scene)
        report.seconds = dict(stages.seconds)
        record = {**asdict(report), "config": asdict(config), "pycolmap": pycolmap.__version__,
                  "applied_transform": transform.tolist(), "sources": {im.name: im.source for im in images}}
        (scene / "process.json").write_text(json.dumps(record, indent=2))
        _publish(scene, out)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
