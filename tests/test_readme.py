"""README.md runs as written: every ```python block, verbatim, in order.

Blocks under one ``## `` heading share a namespace (a reader runs a section top to
bottom); each section starts afresh.  A block preceded by an HTML comment
``<!-- skip-test: reason -->`` (blank lines allowed between) is skipped, with the reason
reported.  A failure names the block (line, section, its number in the section), the
error and the lines of the block that raised it.

Blocks run in a temporary working directory (files they write land there) with the
project's cache (``LENS_JAX_CACHE``, as ``make`` sets it), so blocks that load cached or
pretrained weights are fast; a block that trains from scratch makes this test slow.
"""
from __future__ import annotations

import os
import re
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^(```|~~~)\s*([\w+-]*)\s*$")
_SKIP = re.compile(r"^<!--\s*skip-test:\s*(.*?)\s*-->\s*$")


class Block(NamedTuple):
    line: int            # 1-based line of the opening fence
    section: str
    index: int           # 1-based number among the section's python blocks
    code: str
    skip: str | None     # reason, when marked skip-test


def readme_blocks(text: str) -> list[Block]:
    """The python blocks of a Markdown text, with their sections and skip marks."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section, counts = "(top)", {}
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("## "):
            section = ln[3:].strip()
        m = _FENCE.match(ln.strip())
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if lang in ("python", "py"):
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            skip = _SKIP.match(lines[k].strip()) if k >= 0 else None
            counts[section] = counts.get(section, 0) + 1
            blocks.append(Block(i + 1, section, counts[section], "\n".join(lines[i + 1:j]),
                                skip.group(1) or "no reason given" if skip else None))
        i = j + 1
    return blocks


def _groups() -> dict[str, list[Block]]:
    groups: dict[str, list[Block]] = {}
    for b in readme_blocks(README.read_text(encoding="utf-8")):
        groups.setdefault(b.section, []).append(b)
    return groups


def test_readme_has_python_blocks():
    assert sum(len(v) for v in _groups().values()) >= 1


def test_block_parser_finds_skips_and_sections():
    text = ("# T\n```python\na = 1\n```\n## Use\n<!-- skip-test: needs a GPU -->\n\n"
            "```python\nb = 2\n```\n```bash\nls\n```\n```py\nc = a\n```\n")
    bs = readme_blocks(text)
    assert [(b.line, b.section, b.index, b.code, b.skip) for b in bs] == [
        (2, "(top)", 1, "a = 1", None), (8, "Use", 1, "b = 2", "needs a GPU"),
        (14, "Use", 2, "c = a", None)]


def _run_group(blocks: list[Block], tmp_path: Path) -> list[str]:
    ns: dict = {"__name__": "__readme__"}
    notes = []
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        for b in blocks:
            where = (f"README.md block at line {b.line} (section {b.section!r}, block "
                     f"{b.index} of {len(blocks)})")
            if b.skip is not None:
                notes.append(f"{where}: skipped ({b.skip})")
                continue
            t0 = time.perf_counter()
            try:
                exec(compile(b.code, f"README.md:{b.line}", "exec"), ns)
            except BaseException as e:  # noqa: BLE001 - reported with the block
                frames = [f for f in traceback.extract_tb(e.__traceback__)
                          if f.filename == f"README.md:{b.line}"]
                code = b.code.splitlines()
                lines = [f"  README.md line {b.line + f.lineno}: {code[f.lineno - 1].strip()}"
                         for f in frames if 0 < f.lineno <= len(code)]
                pytest.fail(f"{where} failed: {type(e).__name__}: {e}\n" + "\n".join(lines),
                            pytrace=False)
            notes.append(f"{where}: ran in {time.perf_counter() - t0:.1f} s")
    finally:
        os.chdir(old)
    return notes


@pytest.mark.parametrize("section", list(_groups()) or ["(none)"])
def test_readme_section_runs(section, tmp_path, monkeypatch):
    blocks = _groups().get(section)
    if not blocks:
        pytest.skip("README.md has no python blocks")
    if all(b.skip is not None for b in blocks):
        pytest.skip("; ".join(f"line {b.line}: {b.skip}" for b in blocks))
    cache = Path(os.environ.get("LENS_JAX_CACHE") or README.parent / ".cache")
    monkeypatch.setenv("LENS_JAX_CACHE", str(cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notes = _run_group(blocks, tmp_path)
    print("\n".join(notes))
