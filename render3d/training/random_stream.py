"""A trainer's own random stream, so training is reproducible and leaves the caller's random state alone.

Every trainer (3D, zoo, video) builds its model and runs its steps inside
:meth:`RandomStream.active`: torch's global generators are switched to the run's stream for
the block and back to the caller's afterwards. So a trainer built in a notebook does not
reseed the notebook's random numbers, a viewer or an evaluation between steps cannot change
the run's result, and a checkpoint saves and restores the stream one way
(:meth:`RandomStream.state_dict`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class RandomStream:
    """Torch's CPU generator state (and the CUDA device's, for a CUDA run) owned by one run.

    Args:
        seed: the run's seed.
        device: the run's device; a CUDA device's generator is part of the stream.

    Examples:
        >>> stream = RandomStream(0)
        >>> before = torch.get_rng_state()
        >>> with stream.active():
        ...     first = torch.rand(2)
        >>> torch.equal(torch.get_rng_state(), before)     # the caller's stream is untouched
        True
        >>> with stream.active():
        ...     second = torch.rand(2)                      # the run's stream continues
        >>> torch.equal(torch.cat([first, second]), torch.rand(4, generator=torch.Generator().manual_seed(0)))
        True
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        self._devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(seed)
            self._state = self._capture()

    def _capture(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state()}
        if self._devices:
            state["cuda"] = torch.cuda.get_rng_state(self._devices[0])
        return state

    @contextmanager
    def active(self) -> Iterator[None]:
        """Draw from the run's stream inside the block; the caller's stream is restored after it."""
        with torch.random.fork_rng(devices=self._devices):
            torch.set_rng_state(self._state["torch"])
            if self._devices and "cuda" in self._state:
                torch.cuda.set_rng_state(self._state["cuda"], self._devices[0])
            try:
                yield
            finally:
                self._state = self._capture()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stream's state, for a checkpoint."""
        return dict(self._state)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from :meth:`state_dict` output (a CUDA state is used only by a CUDA run)."""
        self._state = {k: v for k, v in state.items() if k in ("torch", "cuda")}
