"""Sparse-view set-up for the trainer: which training views a run keeps and where its Gaussians start,
computed from those views alone (``render3d train --views K --points stereo|hull|views``).

- :mod:`.selection`: ``--views K``, K training views spread around the scene (:func:`~.selection.sparse_scene`).
- :mod:`.points`: ``--points``, starting points from the training views (:func:`~.points.initial_points`, visual hull).
- :mod:`.stereo`: plane-sweep stereo on the training views, behind ``--points stereo``.

The loss terms that help sparse runs (regularisers, score distillation) are in :mod:`render3d.priors`.
"""
