"""The 2D generative model zoo: AE, VAE, VQ-VAE (+ transformer prior), PixelCNN, GAN, diffusion.

```python
from render3d.zoo import load, registry
model = load("runs/zoo-vae")            # a run folder of `render3d zoo train`
images = model.sample(16)               # [16, C, H, W] in [0, 1]
```
"""

from render3d.zoo.base import ImageSpec, ModelConfig, ZooModel, load, registry

__all__ = ["ImageSpec", "ModelConfig", "ZooModel", "load", "registry"]
