"""Training and viewing share one device through the trainer's lock.

The trainer holds ``lock`` during each step; renders take it between steps. After each
step the trainer calls :meth:`DeviceShare.yield_to_viewer`: when renders are waiting it
pauses for them, but never longer than ``balance / (1 - balance)`` times the step it just
took, so the viewer gets at most ``balance`` of the device while both want it. With
nobody waiting the call returns at once, which keeps the viewer's cost near zero when
nobody moves the camera.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

MAX_YIELD_SECONDS = 10.0


class DeviceShare:
    """A lock plus the train-vs-view ``balance`` (0: training first, 1: viewing first)."""

    def __init__(self, lock: Any = None, balance: float = 0.5) -> None:
        self.lock = lock if lock is not None else threading.RLock()
        self.balance = balance
        self._cond = threading.Condition()
        self._pending = 0
        self.render_seconds = 0.0  # total time renders held the device (for the overhead number)

    @contextmanager
    def rendering(self) -> Iterator[None]:
        """Hold the device for one render."""
        with self._cond:
            self._pending += 1
        held = 0.0
        try:
            with self.lock:
                started = time.perf_counter()
                try:
                    yield
                finally:
                    held = time.perf_counter() - started
        finally:
            with self._cond:
                self._pending -= 1
                self.render_seconds += held
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Renders waiting for or holding the device."""
        return self._pending

    def yield_to_viewer(self, step_seconds: float) -> float:
        """Called by the training thread between steps; returns the seconds it waited."""
        if self._pending == 0 or self.balance <= 0:
            return 0.0
        share = min(self.balance, 0.999)
        budget = min(step_seconds * share / (1.0 - share), MAX_YIELD_SECONDS) if share < 0.999 else MAX_YIELD_SECONDS
        started = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0, timeout=budget)
        return time.perf_counter() - started
