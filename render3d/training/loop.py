"""The training loop every trainer shares: 3D methods, zoo models, video models.

:class:`TrainLoop` owns what is the same everywhere: counting steps, the step and
time budgets, the progress bar, periodic evaluation and checkpoints, pause / resume,
callbacks, and stopping cleanly. A subclass says what one step is
(:meth:`TrainLoop.train_one_step`), what a checkpoint holds, and what the final
evaluation writes.

Stopping: Ctrl-C, SIGTERM and SIGHUP set a flag; the loop finishes the step in flight,
writes a checkpoint and raises :class:`TrainingInterrupted` (exit status 130, 143 or
129), so a checkpoint never holds half a step. A second signal (more than two seconds
after the first: launchers forward the terminal's signal once more) stops at once without
saving (the last checkpoint stays). A ``KeyboardInterrupt`` raised inside a step by
anything else also stops without saving, since that step may be half applied.

Several processes (:mod:`render3d.training.distributed`): before each step the ranks
agree on stopping, pausing and the time budget, so they stop together; rank 0 alone
writes files, shows progress and evaluates; every checkpoint first checks that the
ranks' copies of the model are identical.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional

from tqdm import tqdm

from render3d.errors import Render3DError
from render3d.runtime import torch_threads
from render3d.training import distributed as dist
from render3d.training.callbacks import Callback, StepEvent
from render3d.training.random_stream import RandomStream

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}
REPEAT_SECONDS = 2.0  # a second signal this soon after the first is the same request, forwarded


def periodic_step(step: int, planned: int, every: int) -> int:
    """The step an event due every ``every`` steps (densification, an occupancy-grid refresh) is told in a run
    whose planned step ``planned`` may run ahead of its real step ``step``.

    A run whose ``--max-seconds`` plans it (:meth:`render3d.train.Trainer.planned_step`) moves
    several planned steps per real step. Its start and stop (refine from step N to M) follow the
    plan, but the event keeps its cadence in real steps, since what it reads needs that many
    steps to gather (gsplat's densification averages the gradients since the last one). So the
    result is a multiple of ``every`` (``planned`` rounded down) exactly when ``step`` is one, and
    otherwise a step that is not a multiple. Where ``step == planned`` it is ``planned``.

    Examples:
        >>> periodic_step(10, 25, 10), periodic_step(11, 27, 10), periodic_step(12, 30, 10), periodic_step(7, 7, 10)
        (20, 27, 29, 7)
    """
    if step % every == 0:
        return planned - planned % every
    return planned - 1 if every > 1 and planned % every == 0 else planned


class RealStepCounter:
    """Counts the real steps of a method whose hooks see planned steps (for :func:`periodic_step`).

    It starts from the first planned step it sees (a new run: 0; a resumed one: where it left off),
    so it needs no checkpoint entry; a resumed planned run keeps the cadence, its phase may move.
    """

    def __init__(self) -> None:
        self.next: Optional[int] = None

    def take(self, planned: int) -> int:
        """This step's real step (call once per step)."""
        step = planned if self.next is None else self.next
        self.next = step + 1
        return step


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint (``exit_code``: 128 + signal number)."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path) -> None:
        super().__init__(f"{signal_name} at step {step}")
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint
        self.exit_code = EXIT_CODES.get(signal_name, 130)


class EvaluationInterrupted(TrainingInterrupted):
    """A stop signal during the final evaluation (after training): the checkpoint, written before it,
    is complete; only the final metrics and renders are missing."""


class StopSignals:
    """Turns SIGINT / SIGTERM / SIGHUP into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._at = 0.0

    def request(self, signal_name: str = "SIGINT") -> None:
        """Ask the loop to stop at the next step boundary (what the handlers do)."""
        if self.received is None:
            self.received, self._at = signal_name, time.monotonic()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and time.monotonic() - self._at > REPEAT_SECONDS:
            raise KeyboardInterrupt  # asked twice: stop now, without saving
        self.request(signal.Signals(signum).name)

    @contextmanager
    def installed(self, handler: Optional[Any] = None) -> Iterator["StopSignals"]:
        """Install the handlers for the duration of the block (a no-op off the main thread);
        ``handler(signum, frame)`` instead of the step-boundary flag, where given."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        names = [n for n in EXIT_CODES if hasattr(signal, n)]
        previous = {n: signal.signal(getattr(signal, n), handler or self._handle) for n in names}
        try:
            yield self
        finally:
            for n, handler in previous.items():
                signal.signal(getattr(signal, n), handler)


class TrainLoop:
    """Base class of trainers (see the module docstring).

    Subclasses set ``run_dir``, ``total_steps``, ``random`` (their :class:`RandomStream`, built and
    drawn from where the model starts), and implement :meth:`train_one_step`,
    :meth:`state_dict` and :meth:`checkpoint_path`; they may override :meth:`begin`,
    :meth:`periodic_eval`, :meth:`finish` and :meth:`postfix`.
    """

    run_dir: Path
    total_steps: int
    desc: str = "train"
    random: Optional[RandomStream] = None  # the run's own random stream; each step runs inside it

    def __init__(self, *, budget_seconds: float = 0.0, save_every: int = 0, eval_every: int = 0, log_every: int = 1,
                 progress: bool = True, callbacks: Optional[list[Callback]] = None, threads: int = 0) -> None:
        self.budget_seconds = float(budget_seconds)
        self.threads = int(threads)  # torch CPU threads while run() runs (0: as they are)
        self.save_every = int(save_every)
        self.eval_every = int(eval_every)
        self.log_every = int(log_every)
        self.progress = progress
        self.callbacks: list[Callback] = list(callbacks or [])
        self.step = 0
        self.train_seconds = 0.0
        self.fraction_done = 0.0  # of the step count or the time budget, whichever is further; agreed by all ranks
        self.history: list[dict[str, float]] = []
        self.last_stats: dict[str, float] = {}
        self.last_eval_psnr: Optional[float] = None
        self.stop_signals = StopSignals()
        self._running = threading.Event()
        self._running.set()

    # ----- what subclasses provide -------------------------------------------------------------
    def train_one_step(self) -> dict[str, float]:
        """Run one step; returns scalar stats including ``loss``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Everything a checkpoint holds."""
        raise NotImplementedError

    def checkpoint_path(self) -> Path:
        raise NotImplementedError

    def begin(self) -> None:
        """Before the loop (rank 0 only): create the run folder, write the config."""
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def synced_parameters(self) -> list:
        """The tensors every rank must hold identically (checked at each checkpoint of a distributed run)."""
        return []

    def periodic_eval(self) -> Optional[dict[str, Any]]:
        """Evaluation every ``eval_every`` steps (None: nothing to evaluate)."""
        return None

    def finish(self) -> dict[str, Any]:
        """After the last step and checkpoint: final evaluation and metrics."""
        return {"steps": self.step, "train_seconds": round(self.train_seconds, 2)}

    def postfix(self, stats: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after each step."""
        return {k: f"{v:.4g}" for k, v in list(stats.items())[:4]}

    def step_once(self) -> dict[str, float]:
        """One step as the loop runs it (inside :meth:`step_context`), without callbacks or budgets; its stats."""
        with self.step_context():
            return self.train_one_step()

    def step_context(self) -> ContextManager[Any]:
        """What each step runs inside: the run's :class:`RandomStream` (:attr:`random`), where it has one."""
        return self.random.active() if self.random is not None else nullcontext()

    # ----- control ---------------------------------------------------------------------------
    def add_callback(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def pause(self) -> None:
        self._running.clear()

    def resume_training(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def request_stop(self, signal_name: str = "SIGINT") -> None:
        """Stop at the next step boundary, with a checkpoint, as on Ctrl-C."""
        self.stop_signals.request(signal_name)

    def done(self) -> bool:
        """True once the step count or the time budget is reached."""
        return self.step >= self.total_steps or (self.budget_seconds > 0 and self.train_seconds >= self.budget_seconds)

    def local_fraction_done(self) -> float:
        """How far this rank is through training: the step count or the time budget, whichever is further (0..1).

        Learning-rate schedules read :attr:`fraction_done`, its maximum over the ranks, so
        a time-budgeted run decays its rate to the end of the budget and all ranks agree.
        """
        by_steps = self.step / max(1, self.total_steps)
        by_time = self.train_seconds / self.budget_seconds if self.budget_seconds > 0 else 0.0
        return min(1.0, max(by_steps, by_time))

    def save_checkpoint(self) -> Path:
        """Write the checkpoint atomically (rank 0) and tell the callbacks.

        In a distributed run every rank calls this at the same step: the ranks first check
        that they hold the same model, then rank 0 writes.
        """
        from render3d.checkpoints import save_weights

        dist.check_ranks_agree(self.synced_parameters(), "model")
        path = self.checkpoint_path()
        if dist.is_main():
            save_weights(self.state_dict(), path)
            for cb in self.callbacks:
                cb.on_checkpoint(self, path)
        return path

    def check_finite(self, loss: float) -> None:
        """A one-line error when the loss is NaN or infinite (the last checkpoint is kept)."""
        if math.isfinite(loss):
            return
        saved = self.checkpoint_path()
        where = (f"the last good checkpoint is {saved}: resume from it with a lower learning rate" if saved.is_file()
                 else "no checkpoint was written yet: start again with a lower learning rate")
        raise Render3DError(f"training diverged at step {self.step} (loss is {loss}); {where}")

    # ----- the loop ----------------------------------------------------------------------------
    def _one_step(self) -> tuple[dict[str, float], float]:
        for cb in self.callbacks:
            cb.on_step_start(self, self.step)
        started = time.perf_counter()
        stats = self.step_once()
        elapsed = time.perf_counter() - started
        self.train_seconds += elapsed
        self.last_stats = stats
        if self.log_every and self.step % self.log_every == 0:
            self.history.append({"step": self.step, "seconds": round(self.train_seconds, 4), **stats})
        return stats, elapsed

    def _after_step(self, stats: dict[str, float], elapsed: float) -> None:
        if self.eval_every and self.step % self.eval_every == 0 and not self.done() and dist.is_main():
            metrics = self.periodic_eval()
            if metrics is not None:
                self.last_eval_psnr = metrics.get("psnr", self.last_eval_psnr)
                for cb in self.callbacks:
                    cb.on_eval(self, metrics)
        if self.save_every and self.step % self.save_every == 0:
            self.save_checkpoint()
        event = StepEvent(self.step, self.total_steps, float(stats.get("loss", float("nan"))), elapsed, stats, self.last_eval_psnr)
        for cb in self.callbacks:
            cb.on_step_end(self, event)

    def _next_move(self) -> str:
        """``stop``, ``done``, ``wait`` (paused) or ``step``: decided by all ranks together."""
        code = EXIT_CODES.get(self.stop_signals.received or "", 0)
        stop_code, paused, done, self.fraction_done = dist.agree_values(float(code), float(self.paused), float(self.done()),
                                                                        self.local_fraction_done())
        if stop_code:
            self.stop_signals.request(next(n for n, c in EXIT_CODES.items() if c == int(stop_code)))
            return "stop"
        if done:
            return "done"
        return "wait" if paused else "step"

    def _loop(self, bar: tqdm) -> None:
        while True:
            move = self._next_move()
            if move in ("stop", "done"):
                return
            if move == "wait":
                self._running.wait(timeout=0.2)
                continue
            stats, elapsed = self._one_step()  # a KeyboardInterrupt in here propagates unsaved
            try:
                self._after_step(stats, elapsed)
            except KeyboardInterrupt:  # the step is complete: save it
                self.request_stop("SIGINT")
            bar.update(1)
            bar.set_postfix(self.postfix(stats))

    def run(self) -> dict[str, Any]:
        """Train until the step count or the time budget; returns the final metrics (``{}`` on ranks other than 0).

        Torch runs on ``threads`` CPU threads meanwhile (where set), and on as many as before afterwards.

        Raises:
            TrainingInterrupted: a stop signal arrived; a checkpoint was written first.
            RankFailed: another rank of a distributed run failed.
        """
        with torch_threads(self.threads):
            return self._run()

    def _run(self) -> dict[str, Any]:
        if dist.is_main():
            self.begin()
        for cb in self.callbacks:
            cb.on_train_start(self)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.progress and dist.is_main()), desc=self.desc,
                   unit="step", dynamic_ncols=True)
        with self.stop_signals.installed():
            try:
                self._loop(bar)
                if self.stop_signals.received:
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(self.stop_signals.received, self.step, path)
                self.save_checkpoint()
            except (TrainingInterrupted, dist.RankFailed, KeyboardInterrupt):
                raise
            except Exception as exc:  # tell the other ranks why this one stops
                dist.report_failure(f"{type(exc).__name__}: {exc}")
                raise
            finally:
                bar.close()
        def stop_evaluation(signum: int, frame: Any) -> None:
            raise EvaluationInterrupted(signal.Signals(signum).name, self.step, self.checkpoint_path())

        with self.stop_signals.installed(stop_evaluation):  # a signal now stops at once: the checkpoint is complete
            result = self.finish() if dist.is_main() else {}
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result
