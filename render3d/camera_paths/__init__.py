"""Camera paths: the maths of keyframes and their interpolation, the JSON path file, and generated paths.

- :mod:`~render3d.camera_paths.interpolation`: quaternion rotations, :class:`Keyframe`,
  keyframe interpolation (slerp and Catmull-Rom) and :func:`cameras_from_poses`;
- :mod:`~render3d.camera_paths.path_file`: :class:`CameraPath`, the JSON file's reader with its
  one-line errors (:func:`load_path`) and :func:`save_path`;
- :mod:`~render3d.camera_paths.framing`: where a scene sits (:class:`SceneFrame`) and the paths
  generated around it: orbits, the LLFF spiral, keyframes picked from a dataset's cameras.
"""

from render3d.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "rotmat_to_quat": ".interpolation",
    "slerp": ".interpolation",
    "catmull_rom": ".interpolation",
    "Keyframe": ".interpolation",
    "interpolate_keyframes": ".interpolation",
    "cameras_from_poses": ".interpolation",
    "CameraPath": ".path_file",
    "load_path": ".path_file",
    "save_path": ".path_file",
    "SceneFrame": ".framing",
    "scene_frame": ".framing",
    "frame_from_bounds": ".framing",
    "orbit_poses": ".framing",
    "spiral_poses": ".framing",
    "keyframes_from_cameras": ".framing",
})
