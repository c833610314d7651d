"""A whole method in a few dozen lines, installed as a plug-in: one learnable colour everywhere.

The worked example of "adding a method" (render3d/methods.py); ``tests/test_contract.py``
puts this folder on ``sys.path``, where ``flat_plugin-0.1.dist-info/entry_points.txt``
registers it exactly as ``pip install`` of a package with this ``pyproject.toml`` would::

    [project.entry-points."render3d.methods"]
    flat = "flat_method:FlatMethod"
"""

from dataclasses import dataclass

import torch

from render3d.batches import ViewBatcher
from render3d.config_cli import option
from render3d.methods import BaseMethod, StepOutput
from render3d.protocol import RenderOutput


@dataclass
class FlatConfig:
    """Options of the flat method (CLI: ``--flat.NAME``)."""

    lr: float = option("learning rate of the colour", default=0.05)


class FlatModel(torch.nn.Module):
    """The scene model: every pixel shows one colour at depth 1."""

    def __init__(self, background: torch.Tensor) -> None:
        super().__init__()
        self.color = torch.nn.Parameter(torch.full((3,), 0.5))
        self.register_buffer("background", background.float().clone())

    def images(self, cameras) -> dict:
        shape = (len(cameras), cameras.height, cameras.width)
        return {"rgb": self.color.expand(*shape, 3), "depth": torch.ones(*shape, 1), "alpha": torch.ones(*shape, 1)}

    def render(self, cameras, mode: str = "rgb") -> RenderOutput:
        return RenderOutput(**{k: v.detach() for k, v in self.images(cameras).items()})


class FlatMethod(BaseMethod):
    """Fits the colour to the training views with MSE."""

    name = "flat"
    description = "one learnable colour everywhere (a plug-in example)"
    config_type = FlatConfig

    def __init__(self, config: FlatConfig, model: FlatModel, batches: ViewBatcher) -> None:
        self.model, self.batches = model, batches
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    @classmethod
    def create(cls, config, scene, backend, device, total_steps, seed, batch_size=0):
        return cls(config, FlatModel(scene.background), ViewBatcher(scene.train, device, seed, batch_size or 1))

    @classmethod
    def load_model(cls, config, state, backend, device):
        model = FlatModel(state["model"]["background"])
        model.load_state_dict(state["model"])
        return model

    def optimizers(self):
        return {"color": self.optimizer}

    def next_batch(self, step):
        return self.batches.next()

    def losses(self, step, batch):
        out = self.model.images(batch.cameras)
        return StepOutput({"mse": ((out["rgb"] - batch.rgb) ** 2).mean()}, out)

    def render_views(self, cameras):
        return self.model.images(cameras)

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "batches": self.batches.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
