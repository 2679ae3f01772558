"""A blind reader check: do people see the target class in the morphs?

Classifier transfer says whether *other networks* call an endpoint the target; it does
not say whether a person does.  This module turns endpoints into numbered, shuffled
contact sheets with nothing on them but a tile number, so the person labelling them
cannot tell which driver, domain or mode made a tile (nor whether it is an unedited
source, which makes a useful control), and then scores the person's labels against a
key kept beside the sheets.

    key = reader.make_sheets(frames, meta, "outputs/reader")   # sheet_01.png, ...
    # a person fills outputs/reader/labels.csv: tile,label (a class, or ? if unreadable)
    rows = reader.score(reader.load_key(key), reader.read_labels(labels_csv, key))

The key records a SHA-256 of every sheet and the labels template records the key's
own hash, so labels made against other sheets (a rerun with another seed) are refused
rather than scored against the wrong key.  An existing labels file is never
overwritten.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._io import atomic_write_bytes, atomic_write_text
from .tables import plain

__all__ = ["FORMAT", "make_sheets", "load_key", "read_labels", "score", "pool", "unblind"]

FORMAT = "lens_jax.reader/1"
UNREADABLE = "?"
#: The largest sheet (and unblinded figure) drawn, in pixels (width x height).
MAX_SHEET_PIXELS = 50_000_000
_DIGITS = re.compile(r"[0-9]+")           # ASCII digits only ("²".isdigit() is True)
_COUNTS = ("n", "labelled", "as_target", "as_source", "as_other", "unreadable")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tile_u8(img: np.ndarray, scale: int) -> np.ndarray:
    x = np.asarray(img, np.float64)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 3 and x.shape[-1] != 3:
        raise ValueError(f"a tile must be (H, W), (H, W, 1) or (H, W, 3); got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("a tile has non-finite pixels; refusing to show it to a reader")
    from .viz import _to_uint8
    return np.repeat(np.repeat(_to_uint8(x), scale, axis=0), scale, axis=1)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


_PAD, _HEAD = 6, 18          # sheet layout: gap between tiles, number strip above each


def _box(i: int, h: int, w: int, ncols: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of the ``i``-th tile of a sheet."""
    r, c = divmod(i, ncols)
    x0, y0 = _PAD + c * (w + _PAD), _PAD + r * (h + _HEAD + _PAD) + _HEAD
    return x0, y0, x0 + w, y0 + h


def _sheet_png(tiles: list[np.ndarray], numbers: list[int], *, ncols: int) -> bytes:
    from PIL import Image, ImageDraw

    from .viz import _font
    h, w = tiles[0].shape[:2]
    pad, head = _PAD, _HEAD
    rows = -(-len(tiles) // ncols)
    canvas = Image.new("RGB", (ncols * (w + pad) + pad, rows * (h + head + pad) + pad),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, _ = _font(13)
    for i, (t, num) in enumerate(zip(tiles, numbers)):
        x0, y0, _, _ = _box(i, h, w, ncols)
        draw.text((x0, y0 - head), str(num), fill=(0, 0, 0), font=font)
        im = Image.fromarray(t if t.ndim == 3 else np.stack([t] * 3, -1), "RGB")
        canvas.paste(im, (x0, y0))
    return _png(canvas)


def make_sheets(images: Any, meta: Sequence[Mapping[str, Any]], out: str | os.PathLike, *,
                num_classes: int, per_sheet: int = 40, ncols: int = 8, scale: int = 4,
                seed: int = 0) -> Path:
    """Shuffled, numbered contact sheets of ``images`` and the key that decodes them.

    Args:
      images: ``(N, H, W[, C])`` in [0, 1] (C = 1 or 3).
      meta: one mapping per image, JSON-serialisable, with at least ``source`` and
        ``target`` (classes); anything else (driver, domain, mode, ...) is kept for
        :func:`score` to group by.
      out: folder for ``sheet_01.png``, ..., ``key.json`` and ``labels.csv``.
      num_classes: the labels a reader may give are ``0 .. num_classes - 1`` (or ``?``).
      per_sheet, ncols, scale: tiles per sheet, per row, and the pixel upscaling.
      seed: the shuffle.

    Returns the path of ``key.json``.  ``labels.csv`` (one empty row per tile, headed by
    the key's hash) is written only if it does not exist yet; sheets that differ from
    those a labelled ``labels.csv`` in ``out`` was made for are refused (ValueError),
    so no labelling is ever orphaned.
    """
    imgs = np.asarray(images)
    if imgs.ndim not in (3, 4) or len(imgs) == 0:
        raise ValueError(f"images must be a non-empty (N, H, W[, C]) array; got {imgs.shape}")
    from .checks import check_image
    check_image(imgs, batch=True, name="images")   # float in [0, 1], as morph takes them
    if len(meta) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(meta)} meta entries")
    for i, m in enumerate(meta):
        for k in ("source", "target"):
            v = m.get(k) if isinstance(m, Mapping) else None
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) \
                    or not 0 <= int(v) < int(num_classes):
                raise ValueError(f"meta[{i}] needs {k!r} an integer class in "
                                 f"0..{int(num_classes) - 1}; got {v!r}")
        clash = {"tile", "sheet", "box"} & set(m)
        if clash:
            raise ValueError(f"meta[{i}] uses the key's own fields {sorted(clash)}")
    for name, v in (("per_sheet", per_sheet), ("ncols", ncols), ("scale", scale)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    th, tw = int(imgs.shape[1]) * int(scale), int(imgs.shape[2]) * int(scale)
    cols = min(int(ncols), int(per_sheet), len(imgs))
    rows_ = -(-min(int(per_sheet), len(imgs)) // cols)
    px = (cols * (tw + _PAD) + _PAD) * (rows_ * (th + _HEAD + _PAD) + _PAD)
    if px > MAX_SHEET_PIXELS:
        raise ValueError(f"sheets of {cols} x {rows_} tiles of {th}x{tw} pixels (scale "
                         f"{scale}) would hold {px / 1e6:.0f} megapixels, over the limit of "
                         f"{MAX_SHEET_PIXELS / 1e6:.0f}: lower scale (or per_sheet)")
    out = Path(out)
    order = np.random.default_rng(seed).permutation(len(imgs))
    tiles, sheets, pngs = [], {}, {}
    for start in range(0, len(order), int(per_sheet)):
        idx = order[start:start + int(per_sheet)]
        numbers = [start + j + 1 for j in range(len(idx))]
        name = f"sheet_{start // int(per_sheet) + 1:02d}.png"
        pngs[name] = _sheet_png([_tile_u8(imgs[i], int(scale)) for i in idx], numbers,
                                ncols=int(ncols))
        sheets[name] = _sha(pngs[name])
        th, tw = (np.asarray(imgs.shape[1:3]) * int(scale)).tolist()
        for j, (num, i) in enumerate(zip(numbers, idx)):
            tiles.append({"tile": num, "sheet": name,
                          "box": list(_box(j, th, tw, int(ncols))),
                          **plain(dict(meta[int(i)]))})
    key = {"format": FORMAT, "num_classes": int(num_classes), "seed": int(seed),
           "sheets": sheets, "tiles": tiles}
    text = json.dumps(key, indent=1) + "\n"
    labels = out / "labels.csv"
    old = out / "key.json"
    if labels.exists() and old.exists() and old.read_text() != text and any(
            ln.split(",", 1)[-1].strip() for ln in labels.read_text().splitlines()[2:]):
        raise ValueError(f"{labels} already holds labels for other sheets; making new ones "
                         "here would orphan them: choose another folder or move it away")
    for name, png in pngs.items():
        atomic_write_bytes(out / name, png)
    atomic_write_text(out / "key.json", text)
    if not labels.exists():
        atomic_write_text(labels, f"# key sha256: {_sha(text.encode())}\ntile,label\n"
                          + "".join(f"{t['tile']},\n" for t in tiles))
    return out / "key.json"


def load_key(path: str | os.PathLike, *, check_sheets: bool = True) -> dict:
    """The key written by :func:`make_sheets`, checked (format, tiles, and with
    ``check_sheets`` the SHA-256 of every sheet beside it)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        key = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a reader key ({e})") from None
    if not isinstance(key, dict) or key.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} key")
    tiles = key.get("tiles")
    if not isinstance(tiles, list) or sorted(t.get("tile") for t in tiles) != list(
            range(1, len(tiles) + 1)):
        raise ValueError(f"{path}: the tiles must be numbered 1..N exactly once")
    sheets = key.get("sheets")
    if not isinstance(sheets, dict) or not all(
            isinstance(n, str) and re.fullmatch(r"sheet_[0-9]+\.png", n) for n in sheets):
        raise ValueError(f"{path}: the sheets must be named sheet_NN.png (files beside the "
                         "key, never a path)")
    for t in tiles:
        if t.get("sheet") not in sheets:
            raise ValueError(f"{path}: tile {t.get('tile')} names sheet {t.get('sheet')!r}, "
                             "which is not one of the key's sheets")
        box = t.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in box)
                and 0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
            raise ValueError(f"{path}: tile {t.get('tile')} has a malformed box {box!r}")
    if check_sheets:
        for name, digest in key["sheets"].items():
            sheet = path.parent / name
            if not sheet.exists() or _sha(sheet.read_bytes()) != digest:
                raise ValueError(f"{sheet} is missing or differs from the sheet the key "
                                 "describes; rerun make_sheets")
    key["sha256"] = _sha(raw)
    key["folder"] = str(path.parent)
    return key


def read_labels(path: str | os.PathLike, key: Mapping[str, Any]) -> dict[int, int | None]:
    """A reader's ``labels.csv``: ``{tile: class}``, ``None`` for ``?`` (unreadable).

    Blank labels are left out (not labelled yet).  Refused with ValueError: a file
    without the key line :func:`make_sheets` wrote or made for another key, an unknown
    or repeated tile, a label that is not ``?`` or a class ``0 .. num_classes - 1``.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()   # a spreadsheet's BOM too
    head = [ln for ln in lines if ln.startswith("#")]
    want = f"# key sha256: {key['sha256']}"
    if not head:
        raise ValueError(f"{path} has no '# key sha256: ...' line, so it cannot be matched "
                         "to its sheets; label the labels.csv that make_sheets wrote")
    if head[0].strip() != want:
        raise ValueError(f"{path} was made for another key ({head[0].strip()[14:26]}..., "
                         f"this key is {key['sha256'][:12]}...): the sheets were remade "
                         "after labelling; label the new sheets")
    body = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    rows = list(csv.reader(body))
    if not rows or [c.strip().lower() for c in rows[0]] != ["tile", "label"]:
        raise ValueError(f"{path} must start with the header 'tile,label'")
    n, k = len(key["tiles"]), int(key["num_classes"])
    out: dict[int, int | None] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ValueError(f"{path} row {line}: expected 'tile,label'; got {row}")
        t, lab = row[0].strip(), row[1].strip()
        if not _DIGITS.fullmatch(t) or not 1 <= int(t) <= n:
            raise ValueError(f"{path} row {line}: tile {t!r} is not one of 1..{n}")
        if int(t) in out:
            raise ValueError(f"{path} row {line}: tile {t} is labelled twice")
        if lab == "":
            continue
        if lab == UNREADABLE:
            out[int(t)] = None
        elif _DIGITS.fullmatch(lab) and int(lab) < k:
            out[int(t)] = int(lab)
        else:
            raise ValueError(f"{path} row {line}: label {lab!r} is neither "
                             f"{UNREADABLE!r} nor a class 0..{k - 1}")
    return out


def score(key: Mapping[str, Any], labels: Mapping[int, int | None], *,
          group: Sequence[str] = ("driver", "mode", "domain"),
          judged: Mapping[int, bool] | None = None) -> list[dict]:
    """One row per group of tiles (sorted by the group values): ``n`` tiles,
    ``labelled``, and how many the reader called the target (``as_target``), the source
    (``as_source``), another class (``as_other``) or ``unreadable``; ``target_frac`` is
    ``as_target / labelled``.  Group by any key field (``source``, ``target``, ...).

    ``judged``: ``{tile: bool}``, e.g. whether classifiers call the tile the target; adds
    ``judged_target``, the count over the group's tiles (None where a tile has no entry),
    to set the reader beside them on the same tiles."""
    clash = set(group) & set(_COUNTS)
    if clash:
        raise ValueError(f"cannot group by {sorted(clash)}: those are the score's columns")
    rows = []
    for g, tiles in _grouped(key, group).items():
        row = {**dict(zip(group, g)), **dict.fromkeys(_COUNTS, 0)}
        for t in tiles:
            row["n"] += 1
            reading = _reading(t, labels)
            if reading is not None:
                row["labelled"] += 1
                row[reading] += 1
        row["target_frac"] = _target_frac(row)
        if judged is not None:
            row["judged_target"] = (sum(bool(judged[t["tile"]]) for t in tiles)
                                    if all(t["tile"] in judged for t in tiles) else None)
        rows.append(row)
    return rows


def pool(rounds: Sequence[tuple[Mapping[str, Any], Mapping[int, int | None]]], *,
         group: Sequence[str] = ("driver", "mode", "domain")) -> list[dict]:
    """Several reading rounds as one: ``rounds`` is a sequence of ``(key, labels)`` (each
    round's labels read against its own key); their :func:`score` rows summed per group,
    with ``rounds`` (how many rounds had the group) and ``target_frac`` recomputed.  A tile
    read in two rounds counts twice: ``n`` counts readings."""
    acc: dict[tuple, dict] = {}
    for key, labels in rounds:
        for r in score(key, labels, group=group):
            row = acc.setdefault(tuple(r[k] for k in group), {
                **{k: r[k] for k in group}, "rounds": 0, **dict.fromkeys(_COUNTS, 0)})
            row["rounds"] += 1
            for k in _COUNTS:
                row[k] += r[k]
    rows = [acc[g] for g in sorted(acc, key=lambda g: tuple(str(v) for v in g))]
    for row in rows:
        row["target_frac"] = _target_frac(row)
    return rows


def _target_frac(row: Mapping[str, int]) -> float:
    """``as_target / labelled`` (NaN when nothing is labelled)."""
    return row["as_target"] / row["labelled"] if row["labelled"] else float("nan")


def _grouped(key: Mapping[str, Any], group: Sequence[str]) -> dict[tuple, list]:
    """``{group values: tiles}``, sorted by the group values."""
    groups: dict[tuple, list] = {}
    for t in key["tiles"]:
        groups.setdefault(tuple(t.get(k) for k in group), []).append(t)
    return {g: groups[g] for g in sorted(groups, key=lambda g: tuple(str(v) for v in g))}


def _reading(tile: Mapping[str, Any], labels: Mapping[int, int | None]) -> str | None:
    """What the reader made of ``tile``: ``"as_target"``, ``"as_source"``,
    ``"as_other"``, ``"unreadable"``, or None (not labelled)."""
    if tile["tile"] not in labels:
        return None
    lab = labels[tile["tile"]]
    return ("unreadable" if lab is None else "as_target" if lab == tile["target"]
            else "as_source" if lab == tile["source"] else "as_other")


def unblind(key: Mapping[str, Any], labels: Mapping[int, int | None],
            path: str | os.PathLike, *, group: Sequence[str] = ("driver", "mode", "domain"),
            sheets: str | os.PathLike | None = None) -> Path:
    """After labelling: the tiles regrouped by condition, with what the reader said.

    One row per group (as in :func:`score`), the tiles by source class, then data-set
    order (``index``),
    each captioned with the reader's label: green where it is the target, grey the
    source, red another class, ``?`` unreadable, ``-`` not labelled.  Tiles are cut from
    the sheets in ``sheets`` (default: the key's folder, as :func:`load_key` records
    it); PNG, written atomically.
    """
    from PIL import Image, ImageDraw

    from .viz import _font
    folder = Path(sheets) if sheets is not None else Path(key.get("folder", "."))
    if any("box" not in t for t in key["tiles"]):
        raise ValueError("this key has no tile boxes (made by an older lens_jax); "
                         "remake the sheets")
    known = key.get("sheets") or {}
    for t in key["tiles"]:
        if t["sheet"] not in known or Path(t["sheet"]).name != t["sheet"]:
            raise ValueError(f"tile {t['tile']} names sheet {t['sheet']!r}, which is not one "
                             "of the key's sheets (load the key with load_key)")
    cache: dict[str, Any] = {}
    rows = _grouped(key, group)
    order = list(rows)
    x0, y0, x1, y1 = key["tiles"][0]["box"]
    w, h = x1 - x0, y1 - y0
    if any((t["box"][2] - t["box"][0], t["box"][3] - t["box"][1]) != (w, h)
           for t in key["tiles"]):
        raise ValueError("the key's tile boxes differ in size; remake the sheets")
    ncol = max(len(v) for v in rows.values())
    px = (ncol * (w + 4) + 200) * (len(order) * (h + 22) + 4)
    if px > MAX_SHEET_PIXELS:
        raise ValueError(f"the unblinded figure would hold {px / 1e6:.0f} megapixels (tiles "
                         f"of {w}x{h}, {ncol} per row, {len(order)} rows), over the limit of "
                         f"{MAX_SHEET_PIXELS / 1e6:.0f}: group by more fields, or remake the "
                         "sheets with a smaller scale")
    font, _ = _font(12)
    names = {g: " · ".join(str(v) for v in g) for g in order}
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lab_w, cap = 12 + int(max(probe.textlength(n, font=font) for n in names.values())), 16
    canvas = Image.new("RGB", (lab_w + ncol * (w + 4), len(order) * (h + cap + 6) + 4),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    colours = {"as_target": (0, 140, 0), "as_source": (120, 120, 120),
               "as_other": (200, 0, 0), "unreadable": (0, 0, 0), None: (0, 0, 0)}
    for r, g in enumerate(order):
        top = 4 + r * (h + cap + 6)
        draw.text((4, top + h // 2 - 6), names[g], fill=(0, 0, 0), font=font)
        for c, t in enumerate(sorted(rows[g], key=lambda t: (t.get("source", 0),
                                                               t.get("index", 0)))):
            if t["sheet"] not in cache:
                with Image.open(folder / t["sheet"]) as im:
                    if im.width * im.height > MAX_SHEET_PIXELS:
                        raise ValueError(f"{folder / t['sheet']} is larger than any sheet "
                                         "make_sheets draws; remake the sheets")
                    cache[t["sheet"]] = im.convert("RGB")
                if not (t["box"][2] <= cache[t["sheet"]].width
                        and t["box"][3] <= cache[t["sheet"]].height):
                    raise ValueError(f"tile {t['tile']}'s box {t['box']} lies outside "
                                     f"{t['sheet']}; remake the sheets")
            left = lab_w + c * (w + 4)
            canvas.paste(cache[t["sheet"]].crop(tuple(t["box"])), (left, top))
            lab = labels.get(t["tile"], "-")
            draw.text((left + w // 2 - 4, top + h + 1), UNREADABLE if lab is None else str(lab),
                      fill=colours[_reading(t, labels)], font=font)
    atomic_write_bytes(path, _png(canvas))
    return Path(path)
