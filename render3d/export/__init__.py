"""Exports of trained scenes: camera paths, videos and frames, PLY / .splat, point clouds, meshes."""
