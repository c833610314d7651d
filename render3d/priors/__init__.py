"""Priors for sparse-view 3D: which views a run sees, non-learned regularisers, and score distillation
from a zoo diffusion model, all as loss-term plug-ins (``render3d train --views K --reg ... --prior RUN``).

- :mod:`.views`: spread view selection, pseudo views, patch cameras.
- :mod:`.points`, :mod:`.stereo`: where Gaussians start, from the training views alone (visual hull, plane-sweep stereo).
- :mod:`.regularisers`: depth smoothness, opacity / scale, FreeNeRF frequency annealing and occlusion.
- :mod:`.sds`: score distillation sampling from a frozen diffusion model.
- :mod:`.data`, :mod:`.fit`: the prior's training patches (the run's own training views only) and ``prior fit``.
- :mod:`.bench`: ``prior bench``.
"""
