"""Exports of trained scenes: camera paths, videos and frames, PLY / .splat, point clouds, meshes."""

from render3d.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "CameraPath": ".paths",
    "Keyframe": ".paths",
    "load_path": ".paths",
    "save_path": ".paths",
    "orbit_poses": ".paths",
    "spiral_poses": ".paths",
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
