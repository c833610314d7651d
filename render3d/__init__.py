"""render3d: 3D neural rendering (Gaussian Splatting, NeRF) on CPU and CUDA."""

__version__ = "0.1.0"
