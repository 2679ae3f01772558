"""The blind reader check: sheets show no hint of the condition, labels are verified
against the key, and scores are the counts a direct tally gives."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lens_jax import reader


def _study(tmp_path, n=23, seed=0, **kw):
    rng = np.random.default_rng(1)
    imgs = rng.uniform(0, 1, (n, 8, 8, 1)).astype(np.float32)
    meta = [{"domain": ["pixel", "csp_phase"][i % 2], "driver": "d", "mode": "fixed",
             "source": 3, "target": 8, "i": i} for i in range(n)]
    key = reader.make_sheets(imgs, meta, tmp_path, num_classes=10, per_sheet=10, ncols=4,
                             scale=2, seed=seed, **kw)
    return imgs, meta, key


def test_sheets_are_shuffled_numbered_and_hold_every_image(tmp_path):
    imgs, meta, key_path = _study(tmp_path)
    key = reader.load_key(key_path)
    assert sorted(key["sheets"]) == ["sheet_01.png", "sheet_02.png", "sheet_03.png"]
    order = [t["i"] for t in sorted(key["tiles"], key=lambda t: t["tile"])]
    assert sorted(order) == list(range(23)) and order != list(range(23))   # shuffled
    # the pixels of tile k on its sheet are image order[k-1], upscaled 2x (nearest)
    sheet = np.asarray(Image.open(tmp_path / "sheet_01.png").convert("L"), np.float64)
    pad, head, w = 6, 18, 16
    for k in range(10):
        r, c = divmod(k, 4)
        x0, y0 = pad + c * (w + pad), pad + r * (w + head + pad) + head
        want = np.round(np.clip(imgs[order[k], ..., 0], 0, 1) * 255)
        np.testing.assert_allclose(sheet[y0:y0 + w:2, x0:x0 + w:2], want, atol=1)
    # nothing on a sheet names the condition: the key is the only place it lives
    assert "pixel" not in (tmp_path / "labels.csv").read_text()


def test_score_matches_a_direct_tally(tmp_path):
    _, meta, key_path = _study(tmp_path)
    key = reader.load_key(key_path)
    rng = np.random.default_rng(0)
    choice = {t["tile"]: rng.choice(["8", "3", "5", "?", ""]) for t in key["tiles"]}
    text = (tmp_path / "labels.csv").read_text().splitlines()
    body = [text[0], text[1]] + [f"{t},{choice[t]}" for t in choice]
    (tmp_path / "labels.csv").write_text("\n".join(body) + "\n")
    labels = reader.read_labels(tmp_path / "labels.csv", key)
    rows = reader.score(key, labels, group=("domain",))
    for row in rows:
        tiles = [t["tile"] for t in key["tiles"] if t["domain"] == row["domain"]]
        got = [choice[t] for t in tiles]
        assert row["n"] == len(tiles)
        assert row["labelled"] == sum(g != "" for g in got)
        assert (row["as_target"], row["as_source"], row["as_other"], row["unreadable"]) == (
            got.count("8"), got.count("3"), got.count("5"), got.count("?"))
        assert row["target_frac"] == pytest.approx(row["as_target"] / row["labelled"])
    by_source = reader.score(key, labels, group=("source", "target"))
    assert [(r["source"], r["target"], r["n"]) for r in by_source] == [(3, 8, 23)]
    with pytest.raises(ValueError, match="columns"):
        reader.score(key, labels, group=("n",))
    # classifiers' verdicts on the same tiles: counted per group; a group with a tile the
    # verdicts do not cover gets None
    judged = {t["tile"]: t["tile"] % 3 == 0 for t in key["tiles"]}
    rows_j = reader.score(key, labels, group=("domain",), judged=judged)
    for row in rows_j:
        tiles = [t["tile"] for t in key["tiles"] if t["domain"] == row["domain"]]
        assert row["judged_target"] == sum(t % 3 == 0 for t in tiles)
    first = key["tiles"][0]
    del judged[first["tile"]]
    rows_j = {r["domain"]: r for r in reader.score(key, labels, group=("domain",),
                                                   judged=judged)}
    assert rows_j[first["domain"]]["judged_target"] is None
    # pooled rounds: the rows of each round summed per group (a tile read twice counts twice)
    other = {t: (3 if lab == 8 else lab) for t, lab in labels.items()}    # a second reader
    pooled = reader.pool([(key, labels), (key, other)], group=("domain",))
    one, two = (reader.score(key, lb, group=("domain",)) for lb in (labels, other))
    assert [r["domain"] for r in pooled] == [r["domain"] for r in one]
    for r, a, b in zip(pooled, one, two):
        assert r["rounds"] == 2
        for k in ("n", "labelled", "as_target", "as_source", "as_other", "unreadable"):
            assert r[k] == a[k] + b[k]
        assert r["target_frac"] == pytest.approx(a["as_target"] / (a["labelled"] + b["labelled"]))


def test_existing_labels_are_never_overwritten_or_orphaned(tmp_path):
    _, _, key_path = _study(tmp_path)
    (tmp_path / "labels.csv").write_text("mine\n")
    _study(tmp_path)
    assert (tmp_path / "labels.csv").read_text() == "mine\n"
    # labels made: remaking the same sheets is fine, other sheets are refused
    path = tmp_path / "labels.csv"
    (tmp_path / "labels.csv").unlink()
    _study(tmp_path)
    path.write_text(path.read_text().replace("\n1,\n", "\n1,8\n"))
    key_text, sheet = key_path.read_text(), (tmp_path / "sheet_01.png").read_bytes()
    _study(tmp_path)
    with pytest.raises(ValueError, match="orphan"):
        _study(tmp_path, seed=1)
    assert key_path.read_text() == key_text                        # nothing was written
    assert (tmp_path / "sheet_01.png").read_bytes() == sheet
    assert reader.read_labels(path, reader.load_key(key_path)) == {1: 8}


@pytest.mark.parametrize("rows, match", [
    (["tile,label", "1,8", "1,3"], "twice"),
    (["tile,label", "99,8"], "not one of"),
    (["tile,label", "1,10"], "neither"),
    (["tile,label", "1,eight"], "neither"),
    (["tile,label", "1,8,x"], "expected"),
    (["t,l", "1,8"], "header"),
])
def test_bad_labels_are_refused(tmp_path, rows, match):
    _, _, key_path = _study(tmp_path)
    key = reader.load_key(key_path)
    path = tmp_path / "labels.csv"
    head = path.read_text().splitlines()[0]
    path.write_text("\n".join([head] + rows) + "\n")
    with pytest.raises(ValueError, match=match):
        reader.read_labels(path, key)


def test_labels_without_their_key_line_are_refused_and_a_bom_is_fine(tmp_path):
    _, _, key_path = _study(tmp_path)
    key = reader.load_key(key_path)
    path = tmp_path / "labels.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:3]) + "\n")
    with pytest.raises(ValueError, match="no '# key sha256"):
        reader.read_labels(path, key)
    path.write_bytes(("\ufeff" + "\n".join(lines[:2] + ["1,8"]) + "\n").encode())
    assert reader.read_labels(path, key) == {1: 8}


def test_labels_for_other_sheets_are_refused(tmp_path):
    _, _, key_path = _study(tmp_path, seed=0)
    old = (tmp_path / "labels.csv").read_text().replace("\n1,\n", "\n1,8\n")
    (tmp_path / "labels.csv").unlink()
    _study(tmp_path, seed=1)                       # the sheets are remade, reshuffled
    (tmp_path / "labels.csv").write_text(old)      # and old labels copied in by hand
    with pytest.raises(ValueError, match="another key"):
        reader.read_labels(tmp_path / "labels.csv", reader.load_key(key_path))


def test_a_changed_sheet_or_key_is_refused(tmp_path):
    _, _, key_path = _study(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "sheet_02.png")
    with pytest.raises(ValueError, match="differs"):
        reader.load_key(key_path)
    k = json.loads(key_path.read_text())
    k["tiles"][0]["tile"] = k["tiles"][1]["tile"]
    key_path.write_text(json.dumps(k))
    with pytest.raises(ValueError, match="exactly once"):
        reader.load_key(key_path, check_sheets=False)


def test_bad_input_is_refused(tmp_path):
    imgs = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="own fields"):
        reader.make_sheets(imgs, [{"source": 1, "target": 2, "tile": 5}] * 2, tmp_path,
                           num_classes=10)
    with pytest.raises(ValueError, match="meta"):
        reader.make_sheets(imgs, [{"source": 1, "target": 2}], tmp_path, num_classes=10)
    with pytest.raises(ValueError, match="target"):
        reader.make_sheets(imgs, [{"source": 1, "target": 12}] * 2, tmp_path,
                           num_classes=10)
    bad = imgs.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reader.make_sheets(bad, [{"source": 1, "target": 2}] * 2, tmp_path, num_classes=10)


def test_unblind_puts_each_tile_back_under_its_condition(tmp_path):
    imgs, meta, key_path = _study(tmp_path)
    key = reader.load_key(key_path)
    labels = {t["tile"]: 8 for t in key["tiles"]}
    out = reader.unblind(key, labels, tmp_path / "unblind.png", group=("domain",))
    im = np.asarray(Image.open(out).convert("L"), np.float64)
    # row 0 is csp_phase (sorted): its first tile is the csp_phase image with the
    # lowest "index" (meta has none, so data order within the row is tile order)
    rows = {}
    for t in key["tiles"]:
        rows.setdefault(t["domain"], []).append(t)
    first = sorted(rows["csp_phase"], key=lambda t: (t["source"], 0))[0]
    top = 4
    def up(i):                                   # the tile as drawn: 2x nearest
        return np.kron(np.round(np.clip(imgs[i, ..., 0], 0, 1) * 255), np.ones((2, 2)))
    want = up(first["i"])
    hits = [x for x in range(im.shape[1] - 16)
            if np.allclose(im[top:top + 16, x:x + 16], want, atol=1)]
    assert len(hits) == 1                       # found once, in row 0 ...
    others = [t for t in rows["csp_phase"] if t is not first]
    later = [up(t["i"]) for t in others]
    assert not any(np.allclose(im[top:top + 16, x:x + 16], w, atol=1)
                   for w in later for x in range(hits[0]))       # ... and first in it
    old = json.loads(key_path.read_text())
    for t in old["tiles"]:
        del t["box"]
    with pytest.raises(ValueError, match="remake"):
        reader.unblind(old, labels, tmp_path / "x.png")


def test_images_must_be_in_unit_range(tmp_path):
    """Issue 19 case 8: 0..255 images (uint8 or float) were clipped to white tiles."""
    meta = [{"source": 3, "target": 8}] * 2
    for bad, msg in ((np.full((2, 8, 8), 200, np.uint8), "float in \\[0, 1\\]"),
                     (np.full((2, 8, 8), 200.0), r"\[0, 1\].*max 200"),
                     (np.full((2, 8, 8), np.nan), "NaN")):
        with pytest.raises(ValueError, match=msg):
            reader.make_sheets(bad, meta, tmp_path, num_classes=10)
    assert not list(tmp_path.iterdir())                   # nothing written


def test_classes_must_be_integers(tmp_path):
    """Issue 19: source 3.7 was truncated to 3, so no label could count as the source."""
    imgs = np.zeros((1, 8, 8))
    for m in ({"source": 3.7, "target": 8}, {"source": True, "target": 8},
              {"source": "3", "target": 8}, {"source": 3, "target": 10}):
        with pytest.raises(ValueError, match="integer class in 0..9"):
            reader.make_sheets(imgs, [m], tmp_path, num_classes=10)
    reader.make_sheets(imgs, [{"source": np.int64(3), "target": 8}], tmp_path, num_classes=10)


def test_huge_requests_are_bounded(tmp_path):
    """Issue 19: make_sheets(scale=5000) and unblind of a huge box gave a bare MemoryError."""
    imgs = np.zeros((3, 8, 8))
    meta = [{"source": 3, "target": 8}] * 3
    with pytest.raises(ValueError, match="megapixels.*lower scale"):
        reader.make_sheets(imgs, meta, tmp_path / "a", num_classes=10, scale=5000)
    with pytest.raises(ValueError, match="scale must be an integer"):
        reader.make_sheets(imgs, meta, tmp_path / "a", num_classes=10, scale=2.5)
    key_path = reader.make_sheets(imgs, meta, tmp_path / "b", num_classes=10, scale=2)
    key = reader.load_key(key_path)
    for t in key["tiles"]:
        t["box"] = [0, 0, 200_000, 200_000]
    with pytest.raises(ValueError, match="megapixels"):
        reader.unblind(key, {}, tmp_path / "u.png")


def test_unblind_reads_only_the_keys_sheets(tmp_path):
    """Issue 19: a tile's `sheet` in key.json was not checked, so unblind read an image
    outside the folder."""
    imgs = np.zeros((2, 8, 8))
    key_path = reader.make_sheets(imgs, [{"source": 3, "target": 8}] * 2, tmp_path / "s",
                                  num_classes=10, scale=2)
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "secret.png")
    raw = json.loads(key_path.read_text())
    raw["tiles"][0]["sheet"] = "../secret.png"
    key_path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="not one of the key's sheets"):
        reader.load_key(key_path, check_sheets=False)
    good = json.loads(json.dumps(raw))
    good["tiles"][0]["sheet"] = "sheet_01.png"
    good["folder"] = str(tmp_path / "s")
    bad = json.loads(json.dumps(good))
    bad["tiles"][0]["sheet"] = "../secret.png"
    with pytest.raises(ValueError, match="not one of the key's sheets"):
        reader.unblind(bad, {}, tmp_path / "u.png")
    raw["sheets"]["../secret.png"] = "0" * 64
    key_path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="sheet_NN.png"):
        reader.load_key(key_path, check_sheets=False)


def test_labels_with_non_ascii_digits_name_file_and_row(tmp_path):
    """Issue 19: a label '²' gave a bare int() error without the file or row."""
    _, _, key_path = _study(tmp_path)
    key = reader.load_key(key_path)
    text = (tmp_path / "labels.csv").read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join(text[:2] + ["1,²", "2,8"]) + "\n")
    with pytest.raises(ValueError, match=r"labels.csv row 2: label '²' is neither"):
        reader.read_labels(tmp_path / "labels.csv", key)
    (tmp_path / "labels.csv").write_text("\n".join(text[:2] + ["³,8"]) + "\n")
    with pytest.raises(ValueError, match=r"labels.csv row 2: tile '³' is not one of"):
        reader.read_labels(tmp_path / "labels.csv", key)
