"""The 3D scene Trainer: any registered method, plug-in loss terms, callbacks, checkpoints, eval.

    trainer = Trainer(TrainConfig(steps=3000), SplatConfig(), loss_terms=[DepthLoss()])
    metrics = trainer.run()

The step itself is the method contract of :mod:`render3d.methods`; the loop around it
(budgets, progress, checkpoints, Ctrl-C / SIGTERM, callbacks) is
:class:`render3d.training.TrainLoop`, shared with the zoo and video trainers.
"""

from __future__ import annotations

import math
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from render3d.backend import device_for, resolve_backend
from render3d.checkpoints import load_weights, reading_contents, require_keys
from render3d.config_cli import option
from render3d.errors import Render3DError
from render3d.evaluate import evaluate_split
from render3d.files import write_json
from render3d.losses import LossContext, LossTerm, build_loss_terms, terms_from_specs
from render3d.methods import get_method
from render3d.pose_correction import write_refined_poses
from render3d.sparse_views.points import POINT_SOURCES, initial_points
from render3d.training import Callback, TrainLoop, backward_and_step
from render3d.training import distributed as dist
from render3d.training.random_stream import RandomStream
from render3d.training.run_dir import default_run_path, run_dir_for

PRIOR_TERMS = {"sds": "sds", "targets": "prior-targets"}  # --prior-mode: the loss term the prior runs as
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 2
CHECKPOINT_KEYS = ("version", "method", "config", "method_config", "step", "method_state", "loss_terms", "rng")


@dataclass
class TrainConfig:
    """Options shared by every method (CLI: ``render3d train --NAME``).

    Each field is the option ``--NAME`` of ``render3d train`` (underscores as dashes). A ``--resume`` may give
    ``backend``, ``steps``, ``batch_size``, ``max_seconds``, ``eval_every``, ``save_every`` and ``progress`` again to
    change them; every other option of a resumed run comes from its checkpoint.

    Args:
        data (Optional[str]): Dataset folder (Blender, nerfstudio, COLMAP or LLFF); None trains on the bundled default
            scene. Default: None.
        method (str): What to train: ``splat`` (3D Gaussian Splatting), ``nerf`` (hash-grid NeRF), ``vanilla-nerf``, or
            an installed plug-in (see :mod:`render3d.methods`). Default: "splat".
        backend (str): ``auto`` (``cuda`` when a GPU is present), ``cuda`` (gsplat / nerfacc kernels) or ``torch`` (pure
            PyTorch, any device). Default: "auto".
        steps (int): Training steps. Default: 1200.
        batch_size (int): Views (splats) or rays (NeRF) per step and process; 0: the method's default (one view; NeRF:
            its adaptive ray budget). Default: 0.
        max_seconds (float): A time budget in seconds of training (0: none). The ``steps`` schedule (learning-rate
            decay, densification, SH degree) is planned onto it, so a run the budget ends early is still a finished
            model; checkpoint, eval and metrics as usual. Default: 0.0.
        loss (str): Extra loss terms, comma-separated ``NAME[:WEIGHT]`` (``depth``, ``mask``, or a plug-in), e.g.
            ``"depth:0.1,mask"``; their options are ``--loss.NAME.OPTION`` (``loss_options`` of :class:`Trainer`).
            Default: "".
        views (int): Train from only this many training views, spread around the scene (0: all); evaluation uses the
            full test split. Default: 0.
        points (str): Where Gaussians start: ``data`` (the dataset's sparse points, dropped by ``views``; else random),
            ``random``, ``stereo`` (plane-sweep stereo on the training views), ``hull`` (the visual hull of their alpha)
            or ``views`` (hull with alpha, else stereo). Default: "data".
        reg (str): Regularisers for sparse views, comma-separated ``NAME[:WEIGHT]``: ``depth-tv``, ``opacity``,
            ``scale``, ``freq``, ``occlusion`` (loss terms too). Default: "".
        prior (Optional[str]): A run of ``render3d prior fit``: its diffusion model guides the pseudo views (see
            ``prior_mode``). Default: None.
        prior_mode (str): How the prior acts: ``sds`` (score distillation) or ``targets`` (L1 to pseudo-view patches it
            refines, SDEdit). Default: "sds".
        prior_weight (Optional[float]): Weight of the diffusion prior; None: the mode's own (``sds`` 3e-4, chosen on
            the default scene's validation views; ``targets`` 0.1). Default: None.
        grad_clip (float): Clip the global gradient norm to this value (0: off). Default: 0.0.
        out (Optional[str]): Run folder; None: ``runs/<scene>-<method>-<time>``. Default: None.
        overwrite (bool): Train into an ``out`` folder that already holds a checkpoint, replacing it. Default: False.
        resume (Optional[str]): Continue from a run folder or checkpoint file (see :meth:`Trainer.resume`). Default:
            None.
        seed (int): Random seed; the same seed gives the same result. Default: 0.
        eval_every (int): Evaluate on the test split every N steps (0: only at the end). Default: 0.
        save_every (int): Write the checkpoint every N steps (and always at the end and on Ctrl-C / SIGTERM). Default:
            1000.
        downscale (int): Load images downscaled by this factor (uses ``images_N`` folders when present). Default: 1.
        test_every (int): Hold out every N-th image as test, for formats without explicit splits. Default: 8.
        data_format (Optional[str]): Force a dataset format (``blender``, ``nerfstudio``, ``colmap``, ``llff``) instead
            of detecting it. Default: None.
        progress (bool): Show a progress bar. Default: True.
        viewer (bool): Watch training in the web viewer (prints its URL). Default: False.
        host (str): Viewer address; ``0.0.0.0`` listens on every interface. Default: "127.0.0.1".
        port (int): Viewer port; a free one is used when it is taken. Default: 8080.

    Examples:
        >>> config = TrainConfig(method="nerf", steps=3000, loss="depth:0.1")
        >>> config.validate()  # one-line errors for values no run can use
        >>> TrainConfig(steps=0).validate()
        Traceback (most recent call last):
            ...
        render3d.errors.Render3DError: --steps must be a whole number >= 1, got 0
    """

    data: Optional[str] = option("dataset folder (Blender, nerfstudio, COLMAP or LLFF); the bundled default scene when omitted", default=None)
    method: str = option("what to train: splat (3D Gaussian Splatting), nerf (hash-grid NeRF), vanilla-nerf, or an installed plug-in", default="splat")
    backend: str = option("auto (cuda when a GPU is present), cuda (gsplat/nerfacc kernels) or torch (pure PyTorch, any "
                          "device)", default="auto", resumable=True)
    steps: int = option("training steps", default=1200, resumable=True)
    batch_size: int = option("views (splats) or rays (NeRF) per step and process; 0: the method's default (one view; NeRF: its adaptive ray "
                             "budget)", default=0, resumable=True)
    max_seconds: float = option("a time budget in seconds of training (0: none): the --steps schedule (learning-rate decay, "
                                "densification, SH degree) is planned onto it, so a run the budget ends early is still a "
                                "finished model; checkpoint, eval and metrics as usual", default=0.0, resumable=True)
    loss: str = option("extra loss terms, comma-separated NAME[:WEIGHT] (depth, mask, or a plug-in), e.g. depth:0.1,mask; options as "
                       "--loss.NAME.OPTION", default="")
    views: int = option("train from only this many training views, spread around the scene (0: all); evaluation uses the full test split", default=0)
    points: str = option("where Gaussians start: data (the dataset's sparse points, dropped by --views; else random), random, "
                         "stereo (plane-sweep stereo on the training views), hull (the visual hull of their alpha) or views (hull with alpha, else "
                         "stereo)", default="data")
    reg: str = option("regularisers for sparse views, comma-separated NAME[:WEIGHT]: depth-tv, opacity, scale, freq, occlusion (loss terms too)", default="")
    prior: Optional[str] = option("a prior run of `render3d prior fit`: its diffusion model guides the pseudo views (--prior-mode)", default=None)
    prior_mode: str = option("how the prior acts: sds (score distillation) or targets (L1 to pseudo-view patches it refines, SDEdit)", default="sds")
    prior_weight: Optional[float] = option("weight of the diffusion prior (default: the mode's own: sds 3e-4, chosen on the "
                                           "default scene's validation views; targets 0.1)", default=None)
    grad_clip: float = option("clip the global gradient norm to this value (0: off)", default=0.0)
    out: Optional[str] = option("run folder; runs/<scene>-<method>-<time> when omitted", default=None)
    overwrite: bool = option("train into an --out folder that already holds a checkpoint, replacing it", default=False)
    resume: Optional[str] = option("continue from a run folder or checkpoint file", default=None)
    seed: int = option("random seed; the same seed gives the same result", default=0)
    eval_every: int = option("evaluate on the test split every N steps (0: only at the end)", default=0, resumable=True)
    save_every: int = option("write the checkpoint every N steps (and always at the end and on Ctrl-C / SIGTERM)", default=1000, resumable=True)
    downscale: int = option("load images downscaled by this factor (uses images_N folders when present)", default=1)
    test_every: int = option("hold out every N-th image as test, for formats without explicit splits", default=8)
    data_format: Optional[str] = option("force a dataset format (blender, nerfstudio, colmap, llff) instead of detecting it", default=None)
    progress: bool = option("show a progress bar", default=True, resumable=True)
    viewer: bool = option("watch training in the web viewer (prints its URL)", default=False)
    host: str = option("viewer address; 0.0.0.0 listens on every interface", default="127.0.0.1")
    port: int = option("viewer port; a free one is used when it is taken", default=8080)

    def validate(self) -> None:
        """One-line errors for values no run can use."""
        checks = [
            ("steps", self.steps >= 1, "a whole number >= 1"),
            ("batch-size", self.batch_size >= 0, "a whole number >= 0"),
            ("max-seconds", math.isfinite(self.max_seconds) and self.max_seconds >= 0, "a number >= 0"),
            ("grad-clip", math.isfinite(self.grad_clip) and self.grad_clip >= 0, "a number >= 0"),
            ("views", self.views >= 0, "a whole number >= 0"),
            ("points", self.points in POINT_SOURCES, "one of " + ", ".join(POINT_SOURCES)),
            ("prior-mode", self.prior_mode in PRIOR_TERMS, "one of " + ", ".join(PRIOR_TERMS)),
            ("prior-weight", self.prior_weight is None or (math.isfinite(self.prior_weight) and self.prior_weight >= 0), "a number >= 0"),
            ("eval-every", self.eval_every >= 0, "a whole number >= 0"),
            ("save-every", self.save_every >= 0, "a whole number >= 0"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise Render3DError(f"--{name} must be {what}, got {getattr(self, name.replace('-', '_'))}")


def term_spec(config: TrainConfig) -> str:
    """The ``--loss``, ``--reg`` and ``--prior`` terms as one ``NAME[:WEIGHT],...`` spec (the prior is :data:`PRIOR_TERMS`'s term)."""
    prior = ""
    if config.prior:
        prior = PRIOR_TERMS[config.prior_mode] + ("" if config.prior_weight is None else f":{config.prior_weight!r}")
    return ",".join(part for part in (config.loss, config.reg, prior) if part)


def load_data(config: TrainConfig) -> Any:
    """The scene named by ``config.data``, or the bundled default scene."""
    from render3d.datasets import load_scene
    from render3d.datasets.synthetic import default_scene_dir

    path = config.data if config.data is not None else default_scene_dir()
    return load_scene(path, downscale=config.downscale, test_every=config.test_every, format=config.data_format)


def default_run_dir(config: TrainConfig) -> Path:
    """Where a run without ``--out`` goes: ``runs/<scene>-<method>-<time>`` (``-N`` added when taken, see
    :func:`render3d.training.run_dir.run_dir_for`)."""
    return default_run_path(Path(config.data).name if config.data else "default-scene", config.method)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file from a run folder or a file path, with a one-line error if missing."""
    p = Path(path)
    candidate = p / CHECKPOINT_NAME if p.is_dir() else p
    if not candidate.is_file():
        raise Render3DError(f"no checkpoint at {candidate}: pass a run folder holding {CHECKPOINT_NAME} or the .pt file itself")
    return candidate


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :class:`Trainer` (weights-only: no code in it ever runs)."""
    file = find_checkpoint(path)
    ckpt = load_weights(file)
    if not isinstance(ckpt, dict) or ckpt.get("version") not in (1, CHECKPOINT_VERSION):
        raise Render3DError(f"{file} is not a render3d checkpoint (version {CHECKPOINT_VERSION})")
    return require_keys(ckpt, ("method", "config", "method_config", "step", "method_state"), file)


class Trainer(TrainLoop):
    """Trains any registered method on a scene.

    Args:
        config: the run's options.
        method_config: the method's options (its ``config_type()`` defaults when None).
        scene: a loaded :class:`render3d.datasets.SceneData` (loaded from ``config.data`` when None).
        loss_terms: loss-term plug-ins added to those named in ``config.loss``.
        loss_options: option overrides of the terms named in ``config.loss``: ``{"depth": {"min_alpha": 0.5}}``.
        callbacks: :class:`render3d.training.Callback` objects (the viewer is one).

    ``lock`` is held during each step, so a viewer can render between steps.

    Examples:
        A few steps of Gaussian Splatting on a small rendering of the bundled scene:

        >>> import tempfile
        >>> from render3d.datasets.synthetic import generate_scene
        >>> from render3d.splat import SplatConfig
        >>> tmp = tempfile.TemporaryDirectory()
        >>> scene_dir = generate_scene(tmp.name + "/scene", resolution=16, n_train=4, n_val=1, n_test=1)
        >>> config = TrainConfig(data=str(scene_dir), steps=2, backend="torch", progress=False, out=tmp.name + "/run")
        >>> trainer = Trainer(config, SplatConfig(init_points=100, sh_degree=0))
        >>> metrics = trainer.run()  # trains, evaluates on the test split, writes the run folder
        >>> metrics["method"], metrics["steps"], sorted(path.name for path in trainer.run_dir.iterdir())
        ('splat', 2, ['checkpoint.pt', 'config.json', 'metrics.json', 'renders'])
        >>> Trainer.resume(trainer.run_dir, steps=3).run()["steps"]  # continue the run to step 3
        3
        >>> tmp.cleanup()

        A full run on a scene with depth maps, with a loss-term object beside the terms named in ``config.loss``:

        >>> from render3d.losses.depth import DepthLoss
        >>> Trainer(TrainConfig(data="scenes/room", steps=30_000), SplatConfig(), loss_terms=[DepthLoss()]).run()  # doctest: +SKIP
    """

    desc = "train"

    def __init__(self, config: TrainConfig, method_config: Any = None, scene: Any = None,
                 loss_terms: Sequence[LossTerm] = (), callbacks: Optional[list[Callback]] = None,
                 loss_options: Optional[dict[str, dict[str, Any]]] = None) -> None:
        config.validate()
        super().__init__(budget_seconds=config.max_seconds, save_every=config.save_every, eval_every=config.eval_every,
                         progress=config.progress, callbacks=callbacks)
        if config.data is not None:  # absolute, so --resume works from any folder (a copy: the caller's config is kept)
            config = replace(config, data=str(Path(config.data).expanduser().resolve()))
        self.config = config
        self.method_class = get_method(config.method)
        self.method_config = method_config if method_config is not None else self.method_class.config_type()
        self.backend = resolve_backend(config.backend)
        self.device = device_for(self.backend)
        self.scene = scene if scene is not None else load_data(config)
        if len(self.scene.train) == 0:
            raise Render3DError(f"the train split of {self.scene.root} is empty: add images or check the split files")
        if config.views:
            from render3d.sparse_views.selection import sparse_scene

            self.scene = sparse_scene(self.scene, config.views)
        if config.points != "data":
            if not hasattr(self.method_config, "init_points"):
                raise Render3DError(f"--points {config.points}: the {config.method} method does not start from points; drop --points")
            self.scene = initial_points(self.scene, config.points, self.method_config.init_points, config.seed)
        self.desc = f"train {config.method}"
        self.random = RandomStream(config.seed, self.device)  # the model's start and every step draw from it
        with self.random.active():
            self.method = self.method_class.create(self.method_config, self.scene, self.backend, self.device, config.steps,
                                                   config.seed, batch_size=config.batch_size)
            options = {name: dict(fields) for name, fields in (loss_options or {}).items()}
            if config.prior:
                options.setdefault(PRIOR_TERMS[config.prior_mode], {})["prior"] = config.prior
            self.loss_terms: list[LossTerm] = build_loss_terms(term_spec(config), options) + list(loss_terms)
            for index, term in enumerate(self.loss_terms):
                term.setup(self.scene, config.seed + 1000 * (index + 1))
        self.run_dir = self._run_dir()  # last: a bad option above leaves no empty run folder behind
        self._planned = -1  # the last planned step (see planned_step)
        self.lock = threading.RLock()

    def _run_dir(self) -> Path:
        """``--out`` (refusing to replace another run's checkpoint unless resuming or ``--overwrite``) or a new folder."""
        c = self.config
        return run_dir_for(c.out, default_run_dir(c), CHECKPOINT_NAME, resuming=c.resume is not None, overwrite=c.overwrite)

    @property
    def total_steps(self) -> int:  # type: ignore[override]
        """The run's step count (``config.steps``; a resume may raise it)."""
        return self.config.steps

    # ----- checkpoints --------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "method": self.config.method,
            "config": asdict(self.config),
            "method_config": asdict(self.method_config),
            "step": self.step,
            "method_state": self.method.state_dict(),
            "loss_terms": [term.spec() for term in self.loss_terms],
            "rng": self.random.state_dict(),
            "history": self.history,
            "train_seconds": self.train_seconds,
            "planned_step": self._planned,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        self.step = int(ckpt["step"])
        self.method.load_state_dict(ckpt["method_state"])
        for term, spec in zip(self.loss_terms, ckpt["loss_terms"]):
            term.load_state_dict(spec.get("state", {}))
        self.random.load_state_dict(ckpt["rng"])
        self.history = list(ckpt.get("history", []))
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self._planned = int(ckpt.get("planned_step", self.step - 1))

    @classmethod
    def resume(cls, path: str | os.PathLike, scene: Any = None, callbacks: Optional[list[Callback]] = None,
               **overrides: Any) -> "Trainer":
        """Rebuild a trainer from a checkpoint to continue training (``render3d train --resume``)."""
        file = find_checkpoint(path)
        ckpt = load_checkpoint(file)
        if ckpt["version"] != CHECKPOINT_VERSION:
            raise Render3DError(f"{file} was written by an older render3d: it can be rendered, evaluated and exported, but not resumed")
        require_keys(ckpt, CHECKPOINT_KEYS, file)
        method = get_method(ckpt["method"])
        try:
            config = TrainConfig(**{**ckpt["config"], "resume": str(file), "out": str(file.parent), **overrides})
            method_config = method.config_type(**ckpt["method_config"])
        except TypeError as exc:
            raise Render3DError(f"the options stored in {file} do not match this version of render3d ({exc})") from None
        named = config.loss, config.reg, config.prior  # the terms come back from the checkpoint, with their state
        config.loss, config.reg, config.prior = "", "", None
        points, config.points = config.points, "data"  # the checkpoint holds the Gaussians: no starting points to compute
        with reading_contents(file):
            terms = terms_from_specs(ckpt["loss_terms"])
        trainer = cls(config, method_config, scene, loss_terms=terms, callbacks=callbacks)
        trainer.config.loss, trainer.config.reg, trainer.config.prior = named
        trainer.config.points = points
        with reading_contents(file):
            trainer.load_state_dict(ckpt)
        return trainer

    # ----- training -----------------------------------------------------------------------
    def begin(self) -> None:
        super().begin()
        terms = {term.name: asdict(term.config) for term in self.loss_terms}
        write_json({"train": asdict(self.config), self.config.method: asdict(self.method_config), "loss_terms": terms,
                    "world_size": dist.world_size()}, self.run_dir / "config.json")

    def train_one_step(self) -> dict[str, float]:
        """One step of the method contract (see :mod:`render3d.methods`); returns the step's named losses."""
        step, method = self.planned_step(), self.method
        # the lock and the run's random stream are held by step_context around this step
        method.before_step(step)
        for term in self.loss_terms:
            term.before_step(step, self.total_steps, method)
        batch = method.next_batch(step)
        out = method.losses(step, batch)
        losses = dict(out.losses)
        if self.loss_terms:
            context = LossContext(step, self.total_steps, batch, out, method, self.scene)
            for term in self.loss_terms:
                weight = term.config.weight_at(step, self.total_steps)
                if weight > 0:
                    losses.update({name: weight * value for name, value in term.losses(context).items()})
        total = sum(losses.values())
        loss = float(total.item())
        self.check_finite(loss)
        method.pre_backward(step, out)
        backward_and_step(total, method.optimizers().values(), self.config.grad_clip)
        method.post_backward(step, out)
        self.step += 1
        return {"loss": loss, **{f"loss/{k}": float(v.detach()) for k, v in losses.items()}, **out.stats}

    @contextmanager
    def step_context(self) -> Iterator[None]:
        """The lock, then the run's random stream (strategies draw from torch's global one): a viewer rendering
        between steps can neither change the result nor draw from the run's stream."""
        with self.lock, self.random.active():
            yield

    def planned_step(self) -> int:
        """The step of the ``--steps`` schedule this step trains at: the step itself, or, in a run whose
        ``--max-seconds`` ends first, the share of the time budget used times ``--steps``.

        So a time budget plans the whole run: learning-rate decay, densification and the SH
        degree reach their ends as the budget does, instead of stopping part-way. The planned
        step never repeats or goes back. Periodic events (densify every N steps, refresh the
        occupancy grid) start and stop where the plan says but keep their cadence in real steps
        (:func:`render3d.training.loop.periodic_step`): what they read needs that many steps.
        """
        if self.budget_seconds <= 0:
            planned = self.step
        else:
            by_time = min(self.total_steps - 1, int(self.fraction_done * self.total_steps))
            planned = max(self.step, self._planned + 1, by_time)
        self._planned = planned
        return planned

    def synced_parameters(self) -> list:
        return [p for opt in self.method.optimizers().values() for group in opt.param_groups for p in group["params"]]

    def postfix(self, stats: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{stats['loss']:.4f}", **{k: str(int(v)) for k, v in self.method.stats().items()}}

    # ----- evaluation ---------------------------------------------------------------------
    def evaluate(self, split_name: str = "test", write_images: bool = True) -> dict[str, Any]:
        """PSNR / SSIM (LPIPS when available, depth error where the data has depth) of the current model on a split."""
        with self.lock:
            return evaluate_split(
                self.method.model, self.scene.split(split_name), self.run_dir / "renders" / split_name if write_images else None
            )

    def periodic_eval(self) -> Optional[dict[str, Any]]:
        return self.evaluate("test", write_images=False) if len(self.scene.test) else None

    def finish(self) -> dict[str, Any]:
        """Evaluate on the test split (val if test is empty), write renders and ``metrics.json``."""
        split = "test" if len(self.scene.test) else "val"
        result = self.evaluate(split) if len(self.scene.split(split)) else {}
        for cb in self.callbacks:
            cb.on_eval(self, result)
        metrics = {
            "method": self.config.method,
            "backend": self.backend,
            "device": str(self.device),
            "steps": self.step,
            "planned_steps": self._planned + 1,  # of the --steps schedule: more than steps where --max-seconds planned the run
            "train_seconds": round(self.train_seconds, 2),
            "world_size": dist.world_size(),
            "batch_size": self.config.batch_size,
            "loss_terms": [term.name for term in self.loss_terms],
            "split": split,
            "poses": "given",  # test views are scored at their dataset poses; eval --refine-test-poses fits them
            **{k: v for k, v in result.items() if k != "per_view"},
            **self.method.stats(),
            "per_view": result.get("per_view", []),
        }
        write_json(metrics, self.run_dir / "metrics.json")
        refined = self.method.refined_train_cameras()
        if refined is not None:
            write_refined_poses(self.run_dir / "refined_poses.json", self.scene.train, refined)
        return metrics
