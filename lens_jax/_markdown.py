"""A small, safe Markdown subset rendered as HTML (captions and text of the report page)."""
from __future__ import annotations

import html
import re

__all__ = ["markdown_to_html"]

_LINK_OK = re.compile(r"^(https?://|mailto:|#|[^:]*$)", re.IGNORECASE)


def _inline(text: str) -> str:
    """Escape ``text`` and apply `code`, **bold**, *italic* and [links](url)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)

        def link(m: re.Match) -> str:
            label, url = m.group(1), html.unescape(m.group(2)).strip()
            if not _LINK_OK.match(url):
                return label  # javascript:, data: ... are dropped, the text stays
            return f'<a href="{html.escape(url, quote=True)}">{label}</a>'

        s = re.sub(r"\[([^\]]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)", link, s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        out.append(s)
    return "".join(out)


def markdown_to_html(text: str) -> str:
    """A small, safe Markdown subset as HTML; every piece of text is escaped.

    Blank lines separate paragraphs; lines starting with ``- `` or ``* `` form a list;
    ``#``/``##``/``###`` headings become ``h2``/``h3``/``h4`` (below the page's ``h1``);
    inline: `code`, **bold**, *italic*, [text](url) (http, https, mailto, ``#`` and
    relative URLs only; other schemes keep the text and drop the link).  Raw HTML is shown
    as text, never interpreted.

    >>> markdown_to_html("**3 -> 8**: see `csp_phase` <b>")
    '<p><strong>3 -&gt; 8</strong>: see <code>csp_phase</code> &lt;b&gt;</p>'
    """
    if not isinstance(text, str):
        raise TypeError(f"markdown text must be a str, got {type(text).__name__}")
    blocks = re.split(r"\n\s*\n", text.strip().replace("\r\n", "\n"))
    out = []
    for block in blocks:
        if not block.strip():
            continue
        lines = block.split("\n")
        h = re.match(r"^(#{1,3})\s+(.*)$", block.strip())
        if len(lines) == 1 and h:
            lvl = len(h.group(1)) + 1
            out.append(f"<h{lvl}>{_inline(h.group(2))}</h{lvl}>")
        elif all(re.match(r"^\s*[-*]\s+", ln) or ln.startswith("  ") for ln in lines) and \
                re.match(r"^\s*[-*]\s+", lines[0]):
            items: list[str] = []
            for ln in lines:
                m = re.match(r"^\s*[-*]\s+(.*)$", ln)
                if m:
                    items.append(m.group(1))
                else:
                    items[-1] += " " + ln.strip()
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            out.append("<p>" + _inline(" ".join(ln.strip() for ln in lines)) + "</p>")
    return "\n".join(out)
