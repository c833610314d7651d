"""Text for the panels' markdown.

viser renders a markdown control's raw HTML in every browser (no sanitising), and the
panels' status lines are broadcast to every browser. So anything that did not come from
this code -- a name typed in a browser, a file path, an exception message -- goes through
:func:`escape_markdown` before it is put into markdown.
"""

from __future__ import annotations

import html
import re

# CommonMark's backslash-escapable punctuation, except the HTML characters & < > " ',
# which html.escape turns into entities (a backslash before them would show literally).
_MARKDOWN_PUNCTUATION = re.compile(r"([!#$%()*+,\-./:;=?@\[\\\]^_`{|}~])")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f]+")


def escape_markdown(text: object, limit: int = 300) -> str:
    """``text`` shown literally in viser markdown: no HTML, links, emphasis or new blocks.

    Control characters (line breaks included) become one space, and text longer than
    ``limit`` characters is cut with an ellipsis.
    """
    plain = _LINE_BREAKS.sub(" ", str(text))
    if len(plain) > limit:
        plain = plain[: limit - 1] + "…"
    return html.escape(_MARKDOWN_PUNCTUATION.sub(r"\\\1", plain), quote=True)
