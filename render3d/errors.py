"""User-facing errors.

Anything the user can fix (a missing folder, a corrupt image, a NaN pose, a port in use)
raises :class:`Render3DError` with one line that names the file and the fix. The CLI
prints that line and exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations


class Render3DError(Exception):
    """An error caused by the user's input, with a one-line message that says what to do."""

    exit_code = 2
