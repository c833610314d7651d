"""Structure from motion with pycolmap, in this process, on the CPU.

:func:`reconstruct` runs COLMAP's pipeline on the images of one working folder:

1. one camera per image group (:class:`~.inputs.CaptureImage.group`), created in the
   features database with the EXIF focal length as a prior where there is one, else
   COLMAP's default guess (1.2 x the larger image side);
2. SIFT features at most ``max_image_size`` pixels on the longer side;
3. exhaustive matching (every pair; small sets) or sequential matching (each image with
   its neighbours in name order and at quadratic distances; videos and long sets). No
   vocabulary tree is used: loop closure would need one, and nothing is downloaded;
4. the incremental mapper, or the global one (GLOMAP) with ``mapper="global"``; the
   model that registers the most images is kept;
5. undistortion of that model to pinhole cameras (:func:`undistort`).

Features and matching run on the CPU with the ``pycolmap`` wheel; with ``pycolmap-cuda12``
installed instead they use the GPU (``Device.auto``).

Failures (too few images registered, no model) are one-line
:class:`~render3d.errors.Render3DError` that say what to try.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from render3d.datasets.io import first_line
from render3d.errors import Render3DError

from .inputs import CaptureImage
from .stages import Stages

#: Camera models the processing can estimate (distortion is undone before training).
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
#: Matching strategies; ``auto`` is exhaustive up to :data:`EXHAUSTIVE_LIMIT` images.
MATCHERS = ("auto", "exhaustive", "sequential")
MAPPERS = ("incremental", "global")
#: ``--matching auto`` matches every pair up to this many images (about 1 s per 20 pairs on 2 cores).
EXHAUSTIVE_LIMIT = 60
#: Fewer registered images than this is a failure.
MIN_REGISTERED = 3
#: Hint appended to every failure of the reconstruction.
TRY_HINT = ("try: photos with more overlap (each spot seen from 3+ places), sharper frames, --matching exhaustive, "
            "or a lower --max-image-size")


@dataclass
class SfmOptions:
    """How :func:`reconstruct` runs (see :class:`~.pipeline.ProcessConfig` for each field's meaning)."""

    matching: str = "auto"
    mapper: str = "incremental"
    camera_model: str = "SIMPLE_RADIAL"
    max_image_size: int = 1600
    threads: int = -1
    seed: int = 0


def matcher_for(options: SfmOptions, count: int) -> str:
    """The matcher ``auto`` stands for with ``count`` images, or the one asked for."""
    if options.matching != "auto":
        return options.matching
    return "exhaustive" if count <= EXHAUSTIVE_LIMIT else "sequential"


def _quiet_colmap(log_file: Path) -> None:
    """COLMAP's log goes to ``log_file`` (our own one-line errors say what failed), not over the progress bars."""
    import pycolmap

    pycolmap.logging.logtostderr = False
    pycolmap.logging.alsologtostderr = False
    pycolmap.logging.stderrthreshold = pycolmap.logging.Level.FATAL.value
    pycolmap.logging.set_log_destination(pycolmap.logging.Level.INFO, str(log_file))  # glog appends a time stamp


def _create_cameras(database_path: Path, images: Sequence[CaptureImage], model: str) -> dict[str, int]:
    """One database camera per image group; the group -> camera id map."""
    import pycolmap

    ids: dict[str, int] = {}
    database = pycolmap.Database.open(str(database_path))
    try:
        for image in images:
            if image.group in ids:
                continue
            focal = image.focal or 1.2 * max(image.width, image.height)
            camera = pycolmap.Camera.create_from_model_name(len(ids) + 1, model, focal, image.width, image.height)
            camera.has_prior_focal_length = image.focal is not None
            ids[image.group] = database.write_camera(camera)
    finally:
        database.close()
    return ids


def extract_features(stages: Stages, database: Path, image_dir: Path, images: Sequence[CaptureImage], options: SfmOptions) -> None:
    """SIFT features of every image into ``database``, group by group, in chunks for the progress bar."""
    import pycolmap

    camera_ids = _create_cameras(database, images, options.camera_model)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.num_threads = options.threads
    chunk = max(8, math.ceil(len(images) / 25))  # a call per image would leave cores idle
    token = pycolmap.CancellationToken()
    with stages.stage("features", total=len(images)) as bar:
        for group, camera_id in camera_ids.items():
            names = [im.name for im in images if im.group == group]
            reader = pycolmap.ImageReaderOptions()
            reader.existing_camera_id = camera_id
            for start in range(0, len(names), chunk):
                part = names[start:start + chunk]
                stages.call(pycolmap.extract_features, database, image_dir, image_names=part, camera_mode=pycolmap.CameraMode.SINGLE,
                            reader_options=reader, extraction_options=extraction, device=pycolmap.Device.auto,
                            cancellation_token=token, token=token)
                bar.update(len(part))


def match_features(stages: Stages, database: Path, count: int, options: SfmOptions) -> str:
    """Match the database's features (exhaustive or sequential, see the module docstring); the matcher used
    (:func:`matcher_for`)."""
    import pycolmap

    matcher = matcher_for(options, count)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.threads
    token = pycolmap.CancellationToken()
    with stages.stage(f"matching ({matcher})", total=None, unit="s"):
        if matcher == "exhaustive":
            stages.call(pycolmap.match_exhaustive, database, matching_options=matching, device=pycolmap.Device.auto,
                        cancellation_token=token, token=token)
        else:
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = 10
            pairing.quadratic_overlap = True
            pairing.loop_detection = False  # needs a vocabulary tree, which would be a download
            stages.call(pycolmap.match_sequential, database, matching_options=matching, pairing_options=pairing,
                        device=pycolmap.Device.auto, cancellation_token=token, token=token)
    return matcher


def map_images(stages: Stages, database: Path, image_dir: Path, out: Path, count: int, options: SfmOptions):
    """Run the mapper; the reconstruction (``pycolmap.Reconstruction``) that registered the most images.

    Raises a one-line Render3DError when no model is found or it registers fewer than
    :data:`MIN_REGISTERED` images.
    """
    import pycolmap

    out.mkdir(parents=True, exist_ok=True)
    with stages.stage(f"mapping ({options.mapper})", total=count) as bar:
        try:
            if options.mapper == "global":
                models = stages.call(pycolmap.global_mapping, database, image_dir, out, _global_options(options))
            else:
                token = pycolmap.CancellationToken()
                models = stages.call(pycolmap.incremental_mapping, database, image_dir, out, _incremental_options(options),
                                     next_image_callback=lambda: bar.update(1), cancellation_token=token, token=token)
        except (RuntimeError, ValueError) as exc:
            raise Render3DError(f"structure from motion failed ({first_line(exc)}); {TRY_HINT}") from None
        if models:
            bar.n = max(m.num_reg_images() for m in models.values())
    if not models:
        raise Render3DError(f"structure from motion found no model: no pair of the {count} images could start one; {TRY_HINT}")
    index, best = max(models.items(), key=lambda item: item[1].num_reg_images())
    if best.num_reg_images() < MIN_REGISTERED:
        raise Render3DError(f"structure from motion registered only {best.num_reg_images()} of {count} images; {TRY_HINT}")
    return index, best


def _incremental_options(options: SfmOptions):
    import pycolmap

    pipeline = pycolmap.IncrementalPipelineOptions()
    pipeline.num_threads = options.threads
    pipeline.min_model_size = MIN_REGISTERED
    pipeline.mapper.random_seed = options.seed
    return pipeline


def _global_options(options: SfmOptions):
    import pycolmap

    pipeline = pycolmap.GlobalPipelineOptions()
    pipeline.num_threads = options.threads
    pipeline.random_seed = options.seed
    pipeline.min_model_size = MIN_REGISTERED
    return pipeline


def undistort(stages: Stages, model_dir: Path, image_dir: Path, out: Path, count: int, threads: int) -> Path:
    """Undistort the model in ``model_dir`` and its images to pinhole cameras in ``out`` (``images/``, ``sparse/``); ``out``."""
    import pycolmap

    images_out = out / "images"
    token = pycolmap.CancellationToken()
    with stages.stage("undistortion", total=count, poll=lambda: sum(1 for _ in images_out.glob("*")) if images_out.is_dir() else 0):
        stages.call(pycolmap.undistort_images, out, model_dir, image_dir, num_threads=threads, cancellation_token=token, token=token)
    return out
