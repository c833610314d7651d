"""Imports every zoo model so that each registers itself (see :func:`render3d.zoo.base.registry`)."""

from render3d.zoo import ae, diffusion, gan, pixelcnn, vae, vqvae  # noqa: F401
