"""The viewer's GUI controls and the values the server accepts for each.

viser converts a browser's value to the control's Python type but enforces neither a
slider's min / max nor a dropdown's options, and stores and broadcasts whatever arrives
(a "Max resolution" of 100000 once asked for 1.34 TB). The panels therefore create every
input through :class:`Controls`, which gives the widget its range and remembers a
:class:`Rule` for it; :mod:`render3d.viewer.viser_guard` checks every value a browser
sends against that rule *before* viser stores it. Numbers and vectors are clamped into
range; a value that cannot be repaired (NaN, the wrong type or length, an unknown option,
text that is too long) is refused and the browser is shown the server's value again.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import viser

from render3d.viewer.viser_guard import control_id


class Rejected(ValueError):
    """A browser sent a value that no clamping can make valid."""


class Rule:
    """What one control accepts."""

    def check(self, value: Any) -> Any:
        """The accepted value (possibly clamped). Raises :class:`Rejected`."""
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Rule):
    """A finite number clamped into ``lo..hi`` (rounded when ``integer``)."""

    lo: float
    hi: float
    integer: bool = False

    def check(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Rejected(f"{value!r} is not a finite number")
        clamped = min(max(value, self.lo), self.hi)
        return int(round(clamped)) if self.integer else float(clamped)


@dataclass(frozen=True)
class Vector(Rule):
    """``size`` numbers, each checked by ``element``."""

    element: Number
    size: int

    def check(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != self.size:
            raise Rejected(f"expected {self.size} numbers")
        return tuple(self.element.check(v) for v in value)


@dataclass(frozen=True)
class Choice(Rule):
    """One of the options the server gave the dropdown (read when checking: they change)."""

    options: Callable[[], Sequence[str]]

    def check(self, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.options():
            raise Rejected(f"{value!r} is not an option")
        return value


@dataclass(frozen=True)
class Text(Rule):
    """A string of at most ``max_length`` characters."""

    max_length: int

    def check(self, value: Any) -> Any:
        if not isinstance(value, str) or len(value) > self.max_length:
            raise Rejected(f"expected text of at most {self.max_length} characters")
        return value


@dataclass(frozen=True)
class Flag(Rule):
    """A checkbox: true or false."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise Rejected(f"{value!r} is not true or false")
        return value


@dataclass(frozen=True)
class Press(Rule):
    """A button: a click sends true."""

    def check(self, value: Any) -> Any:
        if value is not True:
            raise Rejected("a button sends true")
        return True


class Controls:
    """Creates the viewer's inputs on ``gui`` and remembers each one's :class:`Rule`.

    Each method adds one kind of input (inside the current folder, as ``gui.add_*`` does)
    and returns viser's handle; the range given to the widget is the one the server enforces.
    """

    def __init__(self, gui: viser.GuiApi) -> None:
        self.gui = gui
        self._rules: dict[str, Rule] = {}
        self._lock = threading.Lock()

    # ----- creating controls ----------------------------------------------------------------
    def _add(self, handle: Any, rule: Rule) -> Any:
        with self._lock:
            self._rules[control_id(handle)] = rule
        return handle

    def slider(self, label: str, lo: float, hi: float, step: float, initial: float, **kw: Any) -> viser.GuiSliderHandle:
        """A slider; integer when ``lo``, ``step`` and ``initial`` are ints."""
        integer = all(isinstance(v, int) for v in (lo, step, initial))
        handle = self.gui.add_slider(label, min=lo, max=hi, step=step, initial_value=initial, **kw)
        return self._add(handle, Number(lo, hi, integer))

    def number(self, label: str, initial: float, lo: float, hi: float, step: float, **kw: Any) -> viser.GuiNumberHandle:
        """A number box; integer when ``initial`` and ``step`` are ints."""
        integer = isinstance(initial, int) and isinstance(step, int)
        handle = self.gui.add_number(label, initial, min=lo, max=hi, step=step, **kw)
        return self._add(handle, Number(lo, hi, integer))

    def vector3(self, label: str, initial: Sequence[float], lo: float, hi: float, step: float, **kw: Any) -> viser.GuiVector3Handle:
        """Three numbers, each in ``lo..hi``."""
        handle = self.gui.add_vector3(label, tuple(initial), min=(lo,) * 3, max=(hi,) * 3, step=step, **kw)  # type: ignore[arg-type]
        return self._add(handle, Vector(Number(lo, hi), 3))

    def rgb(self, label: str, initial: tuple[int, int, int], **kw: Any) -> viser.GuiRgbHandle:
        """A colour as three 0-255 ints."""
        return self._add(self.gui.add_rgb(label, initial, **kw), Vector(Number(0, 255, integer=True), 3))

    def dropdown(self, label: str, options: Sequence[str], initial: str, **kw: Any) -> viser.GuiDropdownHandle:
        """A dropdown; only the options the server sets are accepted."""
        handle = self.gui.add_dropdown(label, tuple(options), initial_value=initial, **kw)
        return self._add(handle, Choice(lambda: handle.options))

    def checkbox(self, label: str, initial: bool, **kw: Any) -> viser.GuiCheckboxHandle:
        return self._add(self.gui.add_checkbox(label, initial, **kw), Flag())

    def text(self, label: str, initial: str, max_length: int, **kw: Any) -> viser.GuiTextHandle:
        """A one-line text box holding at most ``max_length`` characters."""
        return self._add(self.gui.add_text(label, initial, **kw), Text(max_length))

    def button(self, label: str, **kw: Any) -> viser.GuiButtonHandle:
        return self._add(self.gui.add_button(label, **kw), Press())

    # ----- checking values -----------------------------------------------------------------
    def rule(self, handle_id: str) -> Optional[Rule]:
        """The rule of the control with this id; None for anything not made here."""
        with self._lock:
            return self._rules.get(handle_id)

    def check(self, handle_id: str, value: Any) -> Any:
        """``value`` as the control ``handle_id`` accepts it. Raises :class:`Rejected`
        (also for ids of controls not made through this object)."""
        rule = self.rule(handle_id)
        if rule is None:
            raise Rejected("not a control of this viewer")
        return rule.check(value)

    def accepted(self, handle: Any, value: Any) -> Any:
        """``value`` (e.g. read from a file) as ``handle`` accepts it. Raises :class:`Rejected`."""
        return self.check(control_id(handle), value)
