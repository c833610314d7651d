"""``render3d prior bench``: sparse-view training with no regulariser, each non-learned option (the
regularisers; for splats also points from the training views and random backgrounds), everything
together, and the diffusion prior, over several view counts and seeds, on one protocol.

The best non-learned configuration is chosen on the **validation** views (never the test views); for
formats whose validation split is the test split (LLFF, COLMAP, nerfstudio), it is ``all`` (every
option together), fixed before any run. Every run evaluates on the full test split.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from render3d.files import write_json
from render3d.images import to_uint8, write_png

REGULARIZERS = {"splat": ["depth-tv", "opacity", "scale"], "nerf": ["depth-tv", "freq", "occlusion"], "vanilla-nerf": ["depth-tv", "freq", "occlusion"]}


@dataclass(frozen=True)
class Configuration:
    """One non-learned configuration: regularisers (``--reg``), where Gaussians start (``--points``) and
    whether splats train on random backgrounds."""

    name: str
    reg: str = ""
    points: str = "data"
    random_background: bool = False

    def flags(self) -> str:
        """The ``render3d train`` flags it adds (for the report)."""
        parts = [f"--reg {self.reg}" if self.reg else "", f"--points {self.points}" if self.points != "data" else "",
                 "--splat.random-background" if self.random_background else ""]
        return " ".join(p for p in parts if p)


@dataclass
class BenchRow:
    """One configuration at one view count: per-seed test PSNR / SSIM and validation PSNR."""

    views: int
    name: str
    spec: str
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)

    @staticmethod
    def _spread(values: list[float]) -> str:
        if not values:
            return "-"
        mean = statistics.fmean(values)
        return f"{mean:.2f} ± {statistics.pstdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"

    def line(self) -> str:
        ssim = f"{statistics.fmean(self.ssim):.3f}" if self.ssim else "-"
        val = f"{statistics.fmean(self.val_psnr):.2f}" if self.val_psnr else "-"
        return f"| {self.views} | {self.name} | `{self.spec or '-'}` | {self._spread(self.psnr)} | {ssim} | {val} |"


def configurations(method: str, has_alpha: bool) -> list[Configuration]:
    """The non-learned configurations for ``method``: none, each regulariser, (splats) points from the
    training views and random backgrounds (with alpha), then everything together."""
    regs = REGULARIZERS.get(method, ["depth-tv"])
    rows = [Configuration("none")] + [Configuration(r, reg=r) for r in regs]
    if method != "splat":
        return rows + [Configuration("all", reg=",".join(regs))]
    rows.append(Configuration("points", points="views"))
    if has_alpha:
        rows.append(Configuration("random-bg", random_background=True))
    return rows + [Configuration("all", reg=",".join(regs), points="views", random_background=has_alpha)]


def train_once(data: str, views: int, seed: int, setup: Configuration, prior: Optional[str], options: dict[str, Any],
               out: Path) -> tuple[dict, Any]:
    """One sparse-view run; returns its test metrics (plus ``val_psnr``) and the trainer."""
    from render3d.methods import get_method
    from render3d.train import TrainConfig, Trainer

    config = TrainConfig(data=data, views=views, seed=seed, reg=setup.reg, points=setup.points, prior=prior, out=str(out),
                         overwrite=True, progress=False, save_every=0, **options["train"])
    method_options = dict(options.get("method", {}))
    if setup.random_background:
        method_options["random_background"] = True
    trainer = Trainer(config, get_method(config.method).config_type(**method_options))
    metrics = trainer.run()
    if len(trainer.scene.val) and trainer.scene.val is not trainer.scene.test:  # LLFF, COLMAP, nerfstudio: val is test
        metrics["val_psnr"] = trainer.evaluate("val", write_images=False)["psnr"]
    return metrics, trainer


def side_by_side(trainers: dict[str, Any], path: Path) -> None:
    """GT | one render per configuration, of the first test view, as one PNG."""
    first = next(iter(trainers.values()))
    split = first.scene.test
    panels = [split.image_float(0)] + [t.method.model.render(split.cameras[0]).rgb[0].cpu() for t in trainers.values()]
    write_png(path, to_uint8(torch.cat(panels, dim=1)))


def _has_alpha(data: Optional[str], train_options: dict[str, Any]) -> bool:
    """Whether the scene's training images carry alpha (random backgrounds and visual hulls need it)."""
    from render3d.priors.fit import prior_scene

    return prior_scene(data, 0, train_options).train.alpha is not None


def run_bench(data: str, views: list[int], seeds: int, out: Path, options: dict[str, Any], prior_options: dict[str, Any],
              use_prior: bool = True, log: Any = print) -> list[BenchRow]:
    """Every configuration x view count x seed; writes ``results.json``, ``report.md`` and ``renders/*.png`` to ``out``."""
    from render3d.priors.fit import fit_prior

    method = options["train"].get("method", "splat")
    has_alpha = _has_alpha(data, options["train"])
    rows: list[BenchRow] = []
    for k in views:
        runs: dict[str, BenchRow] = {}
        first: dict[str, Any] = {}  # each configuration's seed-0 trainer, for the side-by-side renders

        def measure(setup: Configuration, prior: Optional[str]) -> BenchRow:
            name = setup.name
            mode = options["train"].get("prior_mode", "sds")
            prior_flags = ("--prior PRIOR" + ("" if mode == "sds" else f" --prior-mode {mode}")) if prior else ""
            row = runs[name] = BenchRow(k, name, " ".join(p for p in (setup.flags(), prior_flags) if p))
            for seed in range(seeds):
                metrics, trainer = train_once(data, k, seed, setup, prior, options, out / "runs" / f"k{k}-{name.replace(' ', '')}-s{seed}")
                row.psnr.append(metrics["psnr"])
                row.ssim.append(metrics["ssim"])
                if "val_psnr" in metrics:
                    row.val_psnr.append(metrics["val_psnr"])
                first.setdefault(name, trainer)
                log(f"views {k}, {name}, seed {seed}: test PSNR {metrics['psnr']:.2f}")
            return row

        setups = {c.name: c for c in configurations(method, has_alpha)}
        for setup in setups.values():
            measure(setup, None)
        learned = [r for n, r in runs.items() if n != "none"]
        if all(r.val_psnr for r in learned):
            best = max(learned, key=lambda r: statistics.fmean(r.val_psnr))
        else:  # no validation views of its own (val is test): everything together, chosen before any score
            best = runs["all"]
        shown = {"none": first["none"], f"best ({best.name})": first[best.name]}
        if use_prior:
            prior_run = out / f"prior-k{k}"
            fit_prior(data, k, prior_run, options["train"], **prior_options, overwrite=True)
            for setup in (Configuration("prior"), dataclasses.replace(setups[best.name], name=f"{best.name} + prior")):
                measure(setup, str(prior_run))
                shown[setup.name] = first[setup.name]
        side_by_side(shown, out / "renders" / f"views{k}-{'-'.join(n.split()[0] for n in shown)}.png")
        rows += list(runs.values())
    write_json([row.__dict__ for row in rows], out / "results.json")
    header = "| views | configuration | options | test PSNR (mean ± spread over seeds) | SSIM | val PSNR |\n|---|---|---|---|---|---|"
    (out / "report.md").write_text(header + "\n" + "\n".join(r.line() for r in rows) + "\n")
    return rows
