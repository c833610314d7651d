"""Small helpers shared by test modules."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` every 20 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def resumed_matches_uninterrupted(make: Callable[[str], Any], split_at: int, scene: Any) -> Any:
    """Train ``make("full")`` to the end, and ``make("split")`` for ``split_at`` steps, checkpoint, resume from
    the checkpoint and finish; assert both models are bit-identical. Returns the resumed trainer."""
    import torch

    from render3d.train import Trainer

    full = make("full")
    full.run()
    split = make("split")
    for _ in range(split_at):
        split.step_once()
    split.save_checkpoint()
    resumed = Trainer.resume(split.run_dir, scene=scene)
    assert resumed.step == split_at
    resumed.run()
    for (name, a), b in zip(full.method.model.state_dict().items(), resumed.method.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    return resumed
