"""3D Gaussian Splatting: model, rasterisers (torch and gsplat CUDA), densification, training."""

from render3d.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "GaussianSplats": ".model",
    "init_params": ".model",
    "SplatConfig": ".method",
    "SplatMethod": ".method",
    "RasterSettings": ".render",
    "rasterize": ".render",
    "ExposureCorrection": "render3d.appearance",
    "AppearanceEmbedding": "render3d.appearance",
    "load_ply": ".ply",
    "save_ply": ".ply",
    "load_splat": ".ply",
    "save_splat": ".ply",
})
