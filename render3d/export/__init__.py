"""Exports of trained scenes: camera paths, videos and frames, PLY / .splat, point clouds, meshes."""

from render3d.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "CameraPath": "render3d.camera_paths.path_file",
    "Keyframe": "render3d.camera_paths.interpolation",
    "load_path": "render3d.camera_paths.path_file",
    "save_path": "render3d.camera_paths.path_file",
    "orbit_poses": "render3d.camera_paths.framing",
    "spiral_poses": "render3d.camera_paths.framing",
    "render_frames": ".render",
    "VideoWriter": ".video",
    "PngFolder": ".video",
    "MeshConfig": ".mesh",
    "mesh_from_model": ".mesh",
    "save_mesh": ".mesh",
    "gaussian_points": ".pointcloud",
    "surface_points": ".pointcloud",
    "save_point_cloud": ".pointcloud",
})
