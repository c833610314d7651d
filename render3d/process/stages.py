"""Stages of a long job: a progress bar each, their durations, and Ctrl-C that stops native work.

pycolmap's calls run for seconds to minutes in C++ with the GIL released. :meth:`Stages.call`
runs one in a worker thread while the main thread waits, so Ctrl-C (or SIGTERM turned into
KeyboardInterrupt by the CLI) reaches Python at once; the call's cancellation token is then
cancelled and the worker is given a moment to stop before the interrupt goes on.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from tqdm import tqdm

#: How long an interrupted native call may take to notice its cancellation (seconds).
CANCEL_GRACE_SECONDS = 10.0


class Stages:
    """Progress bars and wall-clock seconds per named stage.

    Args:
        show: draw the progress bars (off for tests and ``--no-progress``).

    Examples:
        >>> stages = Stages(show=False)
        >>> with stages.stage("features", total=2) as bar:
        ...     bar.update(2)
        >>> sorted(stages.seconds)
        ['features']
    """

    def __init__(self, show: bool = True) -> None:
        self.show = show
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: Optional[int] = None, unit: str = "image",
              poll: Optional[Callable[[], int]] = None) -> Iterator[tqdm]:
        """A progress bar for the stage ``name``; its elapsed time keeps moving while native code runs.

        ``poll``, when given, is called twice a second and its value becomes the bar's count
        (for a native call that writes files one by one).
        """
        bar = tqdm(total=total, desc=f"{name:<12}", unit=unit, disable=not self.show, dynamic_ncols=True, leave=True)
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(0.5):
                if poll is not None:
                    bar.n = min(poll(), total or 1 << 62)
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        start = time.perf_counter()
        try:
            yield bar
        finally:
            stop.set()
            ticker.join()
            if poll is not None:
                bar.n = min(poll(), total or 1 << 62)
            bar.close()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @staticmethod
    def call(fn: Callable[..., Any], *args: Any, token: Any = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread; on KeyboardInterrupt, ``token.cancel()`` and re-raise.

        An exception raised by ``fn`` is raised here, in the caller's thread.
        """
        result: dict[str, Any] = {}
        done = threading.Event()  # not Thread.join: an interrupted join can wrongly mark the thread stopped (CPython #90882)

        def work() -> None:
            try:
                result["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller below
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, daemon=True).start()
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:
            if token is not None:
                token.cancel()
            done.wait(CANCEL_GRACE_SECONDS)
            raise
        if "error" in result:
            raise result["error"]
        return result.get("value")
