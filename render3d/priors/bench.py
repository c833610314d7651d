"""``render3d prior bench``: sparse-view training with no regulariser, each non-learned regulariser, and the
diffusion prior, over several view counts and seeds, on one protocol.

The best non-learned configuration is chosen on the **validation** views (never the test views); for
formats whose validation split is the test split (LLFF), the choice is the one made on the default scene
and the table says so. Every run evaluates on the full test split.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from render3d.files import write_json
from render3d.images import to_uint8, write_png

REGULARISERS = {"splat": ["depth-tv", "opacity", "scale"], "nerf": ["depth-tv", "freq", "occlusion"], "vanilla-nerf": ["depth-tv", "freq", "occlusion"]}


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


def configurations(method: str) -> list[tuple[str, str]]:
    """``(name, --reg spec)`` of the non-learned configurations for ``method``: none, each, all together."""
    regs = REGULARISERS.get(method, ["depth-tv"])
    return [("none", "")] + [(r, r) for r in regs] + [("all", ",".join(regs))]


def train_once(data: str, views: int, seed: int, reg: str, prior: Optional[str], options: dict[str, Any], out: Path) -> tuple[dict, Any]:
    """One sparse-view run; returns its test metrics (plus ``val_psnr``) and the trainer."""
    from render3d.methods import get_method
    from render3d.train import TrainConfig, Trainer

    config = TrainConfig(data=data, views=views, seed=seed, reg=reg, prior=prior, out=str(out), overwrite=True, progress=False,
                         save_every=0, **options["train"])
    trainer = Trainer(config, get_method(config.method).config_type(**options.get("method", {})))
    metrics = trainer.run()
    if len(trainer.scene.val) and trainer.scene.format != "llff":
        metrics["val_psnr"] = trainer.evaluate("val", write_images=False)["psnr"]
    return metrics, trainer


def side_by_side(trainers: dict[str, Any], path: Path) -> None:
    """GT | one render per configuration, of the first test view, as one PNG."""
    first = next(iter(trainers.values()))
    split = first.scene.test
    panels = [split.image_float(0)] + [t.method.model.render(split.cameras[0]).rgb[0].cpu() for t in trainers.values()]
    write_png(path, to_uint8(torch.cat(panels, dim=1)))


def run_bench(data: str, views: list[int], seeds: int, out: Path, options: dict[str, Any], prior_options: dict[str, Any],
              use_prior: bool = True, log: Any = print) -> list[BenchRow]:
    """Every configuration x view count x seed; writes ``results.json``, ``report.md`` and ``renders/*.png`` to ``out``."""
    from render3d.priors.fit import fit_prior

    method = options["train"].get("method", "splat")
    rows: list[BenchRow] = []
    for k in views:
        runs: dict[str, BenchRow] = {}
        first: dict[str, Any] = {}  # each configuration's seed-0 trainer, for the side-by-side renders

        def measure(name: str, spec: str, prior: Optional[str]) -> BenchRow:
            row = runs[name] = BenchRow(k, name, ",".join(p for p in (spec, "sds" if prior else "") if p))
            for seed in range(seeds):
                metrics, trainer = train_once(data, k, seed, spec, prior, options, out / "runs" / f"k{k}-{name.replace(' ', '')}-s{seed}")
                row.psnr.append(metrics["psnr"])
                row.ssim.append(metrics["ssim"])
                if "val_psnr" in metrics:
                    row.val_psnr.append(metrics["val_psnr"])
                first.setdefault(name, trainer)
                log(f"views {k}, {name}, seed {seed}: test PSNR {metrics['psnr']:.2f}")
            return row

        for name, spec in configurations(method):
            measure(name, spec, None)
        learned = [r for n, r in runs.items() if n != "none"]
        best = max(learned, key=lambda r: statistics.fmean(r.val_psnr) if r.val_psnr else -math.inf)
        shown = {"none": first["none"], f"best ({best.name})": first[best.name]}
        if use_prior:
            prior_run = out / f"prior-k{k}"
            fit_prior(data, k, prior_run, options["train"], **prior_options, overwrite=True)
            for name, spec in (("prior", ""), (f"{best.name} + prior", best.spec)):
                measure(name, spec, str(prior_run))
                shown[name] = first[name]
        side_by_side(shown, out / "renders" / f"views{k}-{'-'.join(n.split()[0] for n in shown)}.png")
        rows += list(runs.values())
    write_json([row.__dict__ for row in rows], out / "results.json")
    header = "| views | configuration | regularisers | test PSNR (mean ± spread over seeds) | SSIM | val PSNR |\n|---|---|---|---|---|---|"
    (out / "report.md").write_text(header + "\n" + "\n".join(r.line() for r in rows) + "\n")
    return rows
