"""Image files read faithfully (lens_jax.images.read_image), each pixel format written here.

References are independent of the reader: the arrays the files were written from
(numpy), a PNG encoder written below with zlib (for the formats Pillow cannot write:
16-bit colour, a header claiming 200 megapixels), and ``np.rot90`` for EXIF orientation.
"""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lens_jax import images


def _png(path, rows: np.ndarray, *, color_type: int, bit_depth: int, size=None):
    """A minimal PNG: ``rows`` (H, W*channels) big-endian samples; ``size`` overrides
    the header's (width, height) (a header that lies, for the bomb test)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    h, w = rows.shape[0], rows.shape[1] // {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    if size is not None:
        w, h = size
    dt = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + r.astype(dt).tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _digit(h=12, w=10):
    a = np.zeros((h, w))
    a[2:4, 2:8] = 1.0
    a[4:10, 6:8] = 0.8
    return a


def test_8bit_grey_and_rgb_exact(tmp_path):
    a = (np.random.default_rng(0).integers(0, 256, (9, 7, 3))).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "rgb.png")
    Image.fromarray(a[..., 0]).save(tmp_path / "g.png")
    x = images.read_image(tmp_path / "rgb.png")
    assert x.shape == (9, 7, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, a / 255.0, atol=1e-7)
    np.testing.assert_allclose(images.read_image(tmp_path / "g.png")[..., 0], a[..., 0] / 255.0,
                               atol=1e-7)
    # luma: ITU-R 601-2, as Pillow's own convert("L") (to within its integer rounding)
    y = images.read_image(tmp_path / "rgb.png", channels=1)[..., 0]
    ref = np.asarray(Image.fromarray(a).convert("L"), np.float64) / 255.0
    assert np.abs(y - ref).max() <= 1.0 / 255 + 1e-7
    assert images.read_image(tmp_path / "g.png", channels=3).shape == (9, 7, 3)


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    """Issue 19 case 10: a 16-bit PNG was clipped (saturated)."""
    a = (_digit() * 40000 + 1000).astype(np.uint16)      # max 41000 of 65535
    Image.fromarray(a).save(tmp_path / "g16.png")
    x = images.read_image(tmp_path / "g16.png")
    np.testing.assert_allclose(x[..., 0], a / 65535.0, atol=1e-6)
    assert 0.6 < x.max() < 0.63                           # not saturated to 1
    Image.fromarray(a).save(tmp_path / "g16.tiff")
    np.testing.assert_allclose(images.read_image(tmp_path / "g16.tiff"), x, atol=1e-7)


def test_16bit_colour_png_scaled(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    _png(tmp_path / "rgb16.png", a.reshape(5, 18), color_type=2, bit_depth=16)
    x = images.read_image(tmp_path / "rgb16.png")
    assert x.shape == (5, 6, 3)
    assert np.abs(x - a / 65535.0).max() <= 1.0 / 255 + 1e-6   # 8 bits kept by Pillow


def test_float_tiff_in_unit_range_and_refusals(tmp_path):
    """Issue 19 case 11: a float TIFF in [0, 1] became almost black."""
    a = _digit().astype(np.float32) * 0.9 + 0.05
    Image.fromarray(a).save(tmp_path / "f.tiff")
    x = images.read_image(tmp_path / "f.tiff")
    np.testing.assert_allclose(x[..., 0], a, atol=1e-7)
    Image.fromarray(a * 255).save(tmp_path / "f255.tiff")
    with pytest.raises(ValueError, match=r"f255.tiff.*floats in \[12.75, 242.25\].*\[0, 1\]"):
        images.read_image(tmp_path / "f255.tiff")
    b = a.copy()
    b[0, 0] = np.nan
    Image.fromarray(b).save(tmp_path / "nan.tiff")
    with pytest.raises(ValueError, match="NaN"):
        images.read_image(tmp_path / "nan.tiff")
    Image.fromarray((a * 1000).astype(np.int32)).save(tmp_path / "i32.tiff")
    with pytest.raises(ValueError, match="32-bit integers"):
        images.read_image(tmp_path / "i32.tiff")


def test_alpha_composited_over_stated_background(tmp_path):
    """Issue 18.4 / 19 case 9: strokes on a transparent background were read as blank."""
    d = _digit()
    rgba = np.zeros(d.shape + (4,), np.uint8)
    rgba[..., :3] = 255                                   # white strokes...
    rgba[..., 3] = np.round(d * 255).astype(np.uint8)     # ...where alpha says so
    Image.fromarray(rgba).save(tmp_path / "white_on_clear.png")
    with pytest.raises(ValueError, match=r"white_on_clear.png.*transparent in \d+%.*background"):
        images.read_image(tmp_path / "white_on_clear.png")
    over_black = images.read_image(tmp_path / "white_on_clear.png", background="black",
                                   channels=1)
    np.testing.assert_allclose(over_black[..., 0], rgba[..., 3] / 255.0, atol=1e-6)
    over_white = images.read_image(tmp_path / "white_on_clear.png", background="white")
    np.testing.assert_allclose(over_white, 1.0, atol=1e-6)   # white on white
    grey = images.read_image(tmp_path / "white_on_clear.png", background=0.25)
    a = rgba[..., 3:] / 255.0
    np.testing.assert_allclose(grey, np.repeat(a + (1 - a) * 0.25, 3, -1), atol=1e-6)
    # LA (grey + alpha), and a palette image with a transparent index
    la = np.stack([np.zeros_like(rgba[..., 0]), rgba[..., 3]], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(images.read_image(tmp_path / "la.png", background="white")[..., 0],
                               1 - rgba[..., 3] / 255.0, atol=1e-6)
    p = Image.fromarray((d > 0.5).astype(np.uint8), "P")
    p.putpalette([0, 0, 0, 255, 255, 255])
    p.save(tmp_path / "p.png", transparency=0)
    xp = images.read_image(tmp_path / "p.png", background=0.5, channels=1)[..., 0]
    np.testing.assert_allclose(xp, np.where(d > 0.5, 1.0, 0.5), atol=1e-6)
    # a fully opaque alpha channel needs no background
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    np.testing.assert_allclose(images.read_image(tmp_path / "opaque.png"), 1.0)
    with pytest.raises(ValueError, match="not a colour"):
        images.read_image(tmp_path / "opaque.png", background="mauve")


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((6, 10), np.uint8)
    a[0, :3] = 255                                       # top-left mark on a wide image
    exif = Image.Exif()
    exif[0x0112] = 6                                     # shown rotated 90 degrees clockwise
    Image.fromarray(a).save(tmp_path / "rot.png", exif=exif)
    x = images.read_image(tmp_path / "rot.png")[..., 0]
    np.testing.assert_allclose(x, np.rot90(a, -1) / 255.0)
    assert x.shape == (10, 6)


def test_decompression_bombs_refused_before_decoding(tmp_path):
    tiny = np.zeros((1, 1), np.uint8)
    bomb = _png(tmp_path / "bomb.png", tiny, color_type=0, bit_depth=8, size=(14000, 14000))
    with pytest.raises(ValueError, match=r"bomb.png.*decompression bomb") as e:
        images.read_image(bomb)                          # 196 MP: over Pillow's own limit
    assert "\n" not in str(e.value)
    big = _png(tmp_path / "big.png", tiny, color_type=0, bit_depth=8, size=(8000, 8000))
    with pytest.raises(ValueError, match=r"8000x8000 = 64 megapixels.*resize it first"):
        images.read_image(big)                           # 64 MP: over lens_jax's limit
    with pytest.raises(ValueError, match="over the limit of 0"):
        images.read_image(_png(tmp_path / "s.png", np.zeros((4, 4), np.uint8), color_type=0,
                               bit_depth=8), max_pixels=10)


def test_resize_and_errors(tmp_path):
    a = np.linspace(0, 1, 40 * 20).reshape(40, 20)
    Image.fromarray(a.astype(np.float32)).save(tmp_path / "ramp.tiff")
    x = images.read_image(tmp_path / "ramp.tiff", size=(20, 10))
    assert x.shape == (20, 10, 1)
    # halving a linear ramp with the (antialiasing) triangle filter: away from the border
    # each output row is the mean of the two input rows it covers
    np.testing.assert_allclose(x.mean(1)[1:-1, 0], a.reshape(20, 2, 20).mean((1, 2))[1:-1],
                               atol=1e-5)
    c = images.read_image(tmp_path / "ramp.tiff", size=(10, 10), fit="crop")
    assert c.shape == (10, 10, 1)
    with pytest.raises(ValueError, match="no such file"):
        images.read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image file"):
        images.read_image(tmp_path / "junk.png")
    assert images.list_images(tmp_path) == [tmp_path / "junk.png", tmp_path / "ramp.tiff"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        images.list_images(tmp_path / "empty")
