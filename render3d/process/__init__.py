"""Your own captures: a folder of photos or a phone video becomes a posed scene folder.

``render3d data process INPUT... --out OUT`` (or :func:`process_capture` from Python) runs,
all on the CPU and in this process:

1. **inputs** (:mod:`.inputs`): photos get their EXIF orientation applied and keep their
   file names; videos (:mod:`.video_frames`) give ``--frames`` frames spread over time,
   the sharpest of each window, without near-duplicates from a camera that stood still;
2. **structure from motion** (:mod:`.sfm`): pycolmap's SIFT features, exhaustive or
   sequential matching, the incremental (or global, GLOMAP) mapper, and undistortion
   to pinhole cameras;
3. **orientation** (:mod:`.orient`): the scene is turned upright (+z up), centred where
   the cameras look and scaled to a unit-like size;
4. **output** (:mod:`.output`): ``images/`` with ``images_2/4/8`` downscales, ``sparse/0``
   (COLMAP binary), a nerfstudio ``transforms.json`` with ``applied_transform`` and
   ``sparse_pc.ply``, and ``process.json`` (what was registered, how long each stage took).

The output appears whole or not at all: everything is written to a temporary sibling of
``OUT`` that is renamed at the end.
"""

from __future__ import annotations

from .pipeline import ProcessConfig, ProcessReport, process_capture

__all__ = ["ProcessConfig", "ProcessReport", "process_capture"]
