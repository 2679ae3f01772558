"""Markdown for the captions and text of the report page: markdown-it-py (CommonMark),
with raw HTML shown as text and links limited to safe schemes."""
from __future__ import annotations

import functools
import re

__all__ = ["markdown_to_html"]

_LINK_OK = re.compile(r"^(https?://|mailto:|#|[^:]*$)", re.IGNORECASE)


def _safe_link(url: str) -> bool:
    """http(s), mailto, ``#`` fragments and relative URLs; never javascript:, data:, ..."""
    return bool(_LINK_OK.match(url.strip()))


@functools.lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.disable("image")               # the page shows figures itself; no remote images
    md.validateLink = _safe_link
    return md


def markdown_to_html(text: str) -> str:
    """CommonMark (plus tables) as HTML, safe for the report page.

    Raw HTML is escaped and shown as text, never interpreted; links keep only http,
    https, mailto, ``#`` and relative URLs (any other scheme is left as plain text);
    images are not rendered; headings move down one level (``#`` -> ``h2``) below the
    page's ``h1``.

    >>> markdown_to_html("**3 -> 8**: see `csp_phase` <b>")
    '<p><strong>3 -&gt; 8</strong>: see <code>csp_phase</code> &lt;b&gt;</p>'
    >>> markdown_to_html("[x](javascript:alert(1))")
    '<p>[x](javascript:alert(1))</p>'
    """
    if not isinstance(text, str):
        raise TypeError(f"markdown text must be a str, got {type(text).__name__}")
    md = _parser()
    tokens = md.parse(text.replace("\r\n", "\n"))
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(int(tok.tag[1]) + 1, 6)}"
    return md.renderer.render(tokens, md.options, {}).strip()
