"""Training and viewing share one device through the trainer's lock.

The trainer holds ``lock`` during each step; renders take it between steps. After each
step the trainer calls :meth:`DeviceShare.yield_to_viewer`: when renders are waiting it
pauses for them, but never longer than ``balance / (1 - balance)`` times the step it just
took, so the viewer gets at most ``balance`` of the device while both want it. With
nobody waiting the call returns at once, which keeps the viewer's cost near zero when
nobody moves the camera.

The viewer's tensor work runs on short-lived threads (:func:`on_fresh_thread`, and
:meth:`DeviceShare.run`). PyTorch's CPU parallelism (OpenMP) keeps a thread team per
calling thread: a long-lived viewer thread that had run one parallel op kept a second
team alive, and that alone slowed training on a 2-core CPU by 40-70% while nobody looked
(measured with ``bench/bench_viewer.py``). A thread that ends takes its team with it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

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

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` holding the device, on a short-lived thread (see the module docstring)."""
        with self.rendering():
            return on_fresh_thread(fn)

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


def on_fresh_thread(fn: Callable[[], T]) -> T:
    """Call ``fn`` on a new thread that ends when it returns; its result or exception passes through."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="render3d-viewer-work", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
