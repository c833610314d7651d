"""Priors for sparse-view 3D: non-learned regularisers and score distillation from a zoo diffusion
model, as loss-term plug-ins (``render3d train --reg ... --prior RUN``), and ``render3d prior``.

Which views a sparse run sees and where its Gaussians start (``--views K``, ``--points``) are
set up by :mod:`render3d.sparse_views`.

- :mod:`.pseudo_views`: pseudo views and patch cameras, the views the loss terms render.
- :mod:`.regularizers`: depth smoothness, opacity / scale, FreeNeRF frequency annealing and occlusion.
- :mod:`.sds`: score distillation sampling from a frozen diffusion model.
- :mod:`.targets`: pseudo targets the prior refines (``--prior-mode targets``).
- :mod:`.data`, :mod:`.fit`: the prior's training patches (the run's own training views only) and ``prior fit``.
- :mod:`.bench`: ``prior bench``.
"""
