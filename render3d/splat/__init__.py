"""3D Gaussian Splatting: model, rasterisers (torch and gsplat CUDA), densification, training."""
