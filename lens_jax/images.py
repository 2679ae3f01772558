"""Reading image files faithfully: ``read_image(path) -> (H, W, C)`` float32 in [0, 1].

The one reader of image files in lens_jax (the CLI's ``--image`` and ``run --images`` use
it).  Every pixel format Pillow opens is mapped to [0, 1] by its own range, never by a
guess that can clip or darken:

* 8-bit (``L``, ``RGB``, palette, ``1``, CMYK, YCbCr, LAB): divided by 255.
* 16-bit (``I;16`` PNG/TIFF; a 16-bit greyscale PNG): divided by 65535.  (Pillow reads a
  16-bit *colour* PNG as 8 bits per channel: the scale stays right, the low byte is lost.)
* float (``F``, e.g. a 32-bit float TIFF): taken as it is; values must already lie in
  [0, 1] (NaN, inf or values outside are refused, naming the range found).
* 32-bit integers (``I``) other than a 16-bit PNG have no stated range and are refused.
* Transparency (RGBA, LA, a palette or greyscale with a transparent colour): pixels that
  are not fully opaque are composited over ``background``; with no ``background`` such an
  image is refused (a drawing on a transparent page is blank over black and dark over
  white: say which).  A fully opaque alpha channel is dropped.
* EXIF orientation (phones, cameras) is applied, so the array is the image as shown.
* Images over ``max_pixels`` (default :data:`MAX_PIXELS`) are refused before any pixel is
  decoded, as a decompression bomb would be.

>>> import numpy as np, tempfile, os
>>> from PIL import Image
>>> p = os.path.join(tempfile.mkdtemp(), "g16.png")
>>> Image.fromarray(np.full((4, 6), 65535, np.uint16)).save(p)
>>> x = read_image(p)
>>> x.shape, x.dtype, float(x.max())
((4, 6, 1), dtype('float32'), 1.0)
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_image", "parse_background", "MAX_PIXELS", "IMAGE_SUFFIXES", "list_images"]

#: Default limit on width x height (50 megapixels: a float32 RGB copy is 600 MB).
MAX_PIXELS = 50_000_000

#: File suffixes :func:`list_images` takes from a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")

# ITU-R 601-2 luma, as Pillow's convert("L")
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)

_NAMED = {"white": 1.0, "black": 0.0}


def parse_background(value: Any) -> np.ndarray | None:
    """``None``, ``"white"``, ``"black"``, a number in [0, 1], ``"#rrggbb"`` or three
    numbers in [0, 1] -> an RGB triple in [0, 1] (or None).

    Raises:
      ValueError: anything else, naming the value.
    """
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else None
    try:
        if text is not None:
            if text in _NAMED:
                return np.full(3, _NAMED[text])
            if text.startswith("#") and len(text) == 7:
                return np.array([int(text[i:i + 2], 16) for i in (1, 3, 5)], np.float64) / 255
            parts = [float(v) for v in text.split(",")]
        else:
            parts = [float(v) for v in np.atleast_1d(np.asarray(value, np.float64))]
    except (ValueError, TypeError):
        parts = []
    if len(parts) == 1:
        parts = parts * 3
    rgb = np.asarray(parts, np.float64)
    if rgb.shape != (3,) or not np.all(np.isfinite(rgb)) or rgb.min() < 0 or rgb.max() > 1:
        raise ValueError(f"background {value!r} is not a colour: use white, black, a grey "
                         "level in [0, 1] (e.g. 0.5), #rrggbb or r,g,b in [0, 1]")
    return rgb


def _open(path: Path, max_pixels: int):
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            # our own limit decides below; Pillow's warning would be an error under
            # filterwarnings = error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ValueError(f"image file {str(path)!r} refused: {e} (a decompression bomb, or "
                         "an image far larger than a classifier needs: resize it first)"
                         ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image file {str(path)!r}: {e}") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ValueError(f"image file {str(path)!r} is {w}x{h} = {w * h / 1e6:.0f} megapixels, "
                         f"over the limit of {max_pixels / 1e6:.0f} (refused as a "
                         "decompression bomb would be): resize it first, or raise "
                         "max_pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            out = ImageOps.exif_transpose(im)       # the image as a viewer shows it
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image file {str(path)!r}: {e}") from None
    finally:
        im.close()
    out.format = im.format
    return out


def _to_float(im: Any, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow image -> (colour (H, W, 1 or 3) float64 in [0, 1], alpha (H, W) or None)."""
    mode = im.mode
    if "transparency" in im.info and mode in ("P", "L", "RGB", "I;16", "I"):
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, np.float64)[..., None] / 65535.0, None
    if mode == "I":
        a = np.asarray(im, np.float64)
        if getattr(im, "format", None) == "PNG" and a.min() >= 0 and a.max() <= 65535:
            return a[..., None] / 65535.0, None
        raise ValueError(f"image file {str(path)!r} holds 32-bit integers (range "
                         f"[{a.min():.6g}, {a.max():.6g}]), which have no stated scale: "
                         "save it as 8- or 16-bit, or as float in [0, 1]")
    if mode == "F":
        a = np.asarray(im, np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"image file {str(path)!r} (float) holds NaN or inf values")
        if a.min() < 0 or a.max() > 1:
            raise ValueError(f"image file {str(path)!r} holds floats in [{a.min():.6g}, "
                             f"{a.max():.6g}]; a float image must lie in [0, 1]: scale it "
                             "(e.g. divide by 255) and save it again")
        return a[..., None], None
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        im = im.convert("LA" if mode in ("LA", "La") else "RGBA")
        a = np.asarray(im, np.float64) / 255.0
        return a[..., :-1], a[..., -1]
    if mode in ("L", "RGB"):
        a = np.asarray(im, np.float64) / 255.0
        return (a[..., None] if a.ndim == 2 else a), None
    if mode == "1":
        return np.asarray(im.convert("L"), np.float64)[..., None] / 255.0, None
    # P without transparency, CMYK, YCbCr, LAB, HSV, ...: Pillow's own RGB conversion
    try:
        a = np.asarray(im.convert("RGB"), np.float64) / 255.0
    except (ValueError, OSError) as e:
        raise ValueError(f"image file {str(path)!r}: pixel format {mode!r} is not "
                         f"supported ({e})") from None
    return a, None


def _resize(x: np.ndarray, size: tuple[int, int], fit: str) -> np.ndarray:
    """Bilinear (antialiased when shrinking, Pillow) resize of (H, W, C) float64."""
    from PIL import Image
    H, W = size
    h, w = x.shape[:2]
    if fit == "crop":
        s = max(H / h, W / w)
        nh, nw = max(H, round(h * s)), max(W, round(w * s))
    else:
        nh, nw = H, W
    if (nh, nw) != (h, w):
        chans = [np.asarray(Image.fromarray(x[..., c].astype(np.float32), "F")
                            .resize((nw, nh), Image.BILINEAR), np.float64)
                 for c in range(x.shape[-1])]
        x = np.stack(chans, -1)
    if fit == "crop":
        top, left = (nh - H) // 2, (nw - W) // 2
        x = x[top:top + H, left:left + W]
    return np.clip(x, 0.0, 1.0)


def read_image(path: str | os.PathLike, *, channels: int | None = None,
               background: Any = None, size: tuple[int, int] | None = None,
               fit: str = "stretch", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file as ``(H, W, C)`` float32 in [0, 1] (see the module docstring).

    Args:
      path: any file Pillow opens (PNG, JPEG, TIFF, BMP, GIF (first frame), WebP, ...).
      channels: 1 (luma, ITU-R 601-2 as Pillow's ``convert("L")``), 3 (grey repeated)
        or None (the file's own: 1 for greyscale, 3 for colour).
      background: what lies behind transparent pixels (:func:`parse_background`:
        ``"white"``, ``"black"``, a grey level, ``"#rrggbb"``, ``(r, g, b)``).  Needed
        only when some pixel is not fully opaque; None refuses such an image.
      size: ``(H, W)`` to resize to (bilinear, antialiased when shrinking), or None.
      fit: ``"stretch"`` (the whole image to ``size``; the aspect ratio is not kept) or
        ``"crop"`` (the shorter side to ``size``, then the centre crop).
      max_pixels: refuse files with more pixels (width x height) than this.

    Raises:
      ValueError: an unreadable or missing file, a refused size, an image with
        transparency and no ``background``, float values outside [0, 1], 32-bit integers,
        bad options -- naming the file and the fix.
    """
    p = Path(path)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if fit not in ("stretch", "crop"):
        raise ValueError(f"fit must be 'stretch' or 'crop', got {fit!r}")
    if size is not None:
        size = tuple(int(v) for v in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (H, W) with positive sides, got {size!r}")
    bg = parse_background(background)
    if not p.is_file():
        raise ValueError(f"cannot read image file {str(p)!r}: no such file")
    im = _open(p, int(max_pixels))
    colour, alpha = _to_float(im, p)
    if alpha is not None:
        if np.all(alpha >= 1.0):
            alpha = None
        elif bg is None:
            frac = float(np.mean(alpha < 1.0))
            raise ValueError(f"image file {str(p)!r} is transparent in {100 * frac:.0f}% of "
                             "its pixels: say what lies behind them with a background "
                             "(white, black, a grey level in [0, 1] or #rrggbb; e.g. white "
                             "for dark strokes drawn on a transparent page)")
    if alpha is not None:
        b = bg if colour.shape[-1] == 3 else np.array([float(bg @ _LUMA)])
        colour = alpha[..., None] * colour + (1.0 - alpha[..., None]) * b.reshape(1, 1, -1)
    if channels == 1 and colour.shape[-1] == 3:
        colour = (colour @ _LUMA)[..., None]
    elif channels == 3 and colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    if size is not None:
        colour = _resize(colour, size, fit)
    return np.ascontiguousarray(np.clip(colour, 0.0, 1.0), dtype=np.float32)


def list_images(path: str | os.PathLike) -> list[Path]:
    """A file, or a folder's image files (by suffix, :data:`IMAGE_SUFFIXES`), sorted.

    Raises:
      ValueError: a missing path or a folder without image files.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ValueError(f"no such image file or folder: {str(p)!r}")
    files = sorted(f for f in p.iterdir() if f.is_file()
                   and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"folder {str(p)!r} holds no image files "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    return files

