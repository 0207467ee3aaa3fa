"""Reading and writing images: every odd file becomes a float array or one clear error.

Arrays are float32 in [0, 1], (H, W) for grey or (H, W, 3) for colour. Alpha is kept
aside and restored on save; 16-bit inputs are scaled (never clipped) and can be written
back at 16 bits.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from denoise_studio.core.errors import ImageError
from denoise_studio.core.fileio import atomic_write_bytes

MAX_PIXELS = 120_000_000    # larger images are refused before decoding (decompression bombs)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS   # Pillow warns above this; load_image turns the warning into an error
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm")


@dataclass
class LoadedImage:
    pixels: np.ndarray          # float32 in [0, 1]: (H, W) grey or (H, W, 3) colour
    alpha: np.ndarray | None    # float32 (H, W) in [0, 1], or None
    bit_depth: int              # 8 or 16: what a save should write back
    path: str = ""

    @property
    def grey(self) -> bool:
        return self.pixels.ndim == 2


def _decode(im: Image.Image, name: str) -> LoadedImage:
    im = ImageOps.exif_transpose(im) or im
    mode = im.mode
    alpha = None
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return LoadedImage(np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0, None, 16, name)
    if mode == "I":
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        return LoadedImage(np.clip(a / peak, 0, 1).astype(np.float32), None, 16 if peak > 255 else 8, name)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
        peak = 1.0 if a.max() <= 1.0 else (255.0 if a.max() <= 255 else 65535.0)
        return LoadedImage(np.clip(a / peak, 0, 1), None, 16, name)
    if mode in ("LA", "RGBA"):
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        im = im.convert("L" if mode == "LA" else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("L", "RGB"):
        im = im.convert("RGB")   # CMYK, YCbCr, LAB, HSV, ...
    return LoadedImage(np.asarray(im, dtype=np.float32) / 255.0, alpha, 8, name)


def load_image(path) -> LoadedImage:
    """Load any supported image, or raise ImageError naming the file and the problem."""
    path = Path(path)
    name = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{name}: {w}×{h} is too large to decode safely "
                                     f"(limit {MAX_PIXELS // 1_000_000} megapixels); crop or resize it first.")
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)   # animated: the first frame
                im.load()
                out = _decode(im, name)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file.") from None
    except IsADirectoryError:
        raise ImageError(f"{name} is a folder, not an image.") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied; make it readable.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Denoise Studio can read (PNG, JPEG, TIFF, BMP, WebP, GIF).") \
            from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (over {MAX_PIXELS // 1_000_000} megapixels, "
                         "a possible decompression bomb); crop or resize it first.") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as e:
        raise ImageError(f"{name} is truncated or corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__}).") \
            from None
    if min(out.pixels.shape[:2]) < 1:
        raise ImageError(f"{name} has no pixels.")
    return out


def _png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, RGB or RGBA) from uint16 (H, W[, C]); Pillow cannot write 16-bit colour."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = array.astype(">u2").reshape(h, w * channels).tobytes()
    stride = w * channels * 2
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def encode_image(pixels: np.ndarray, suffix: str = ".png", bit_depth: int = 8, alpha=None) -> bytes:
    """Encode float [0, 1] pixels; 16-bit where the format allows (PNG, grey TIFF)."""
    pixels = np.clip(np.nan_to_num(pixels), 0, 1)
    if alpha is not None:
        pixels = np.dstack([pixels if pixels.ndim == 3 else pixels[..., None], alpha])
    suffix = suffix.lower()
    if bit_depth == 16 and suffix == ".png":
        return _png16(np.round(pixels * 65535).astype(np.uint16))
    buf = io.BytesIO()
    if bit_depth == 16 and suffix in (".tif", ".tiff") and pixels.ndim == 2:
        Image.fromarray(np.round(pixels * 65535).astype(np.uint16)).save(buf, format="TIFF")
        return buf.getvalue()
    im = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP", ".webp": "WEBP"}.get(suffix)
    if fmt is None:
        raise ImageError(f"cannot write {suffix} files; use .png or .tif.")
    if fmt == "JPEG" and im.mode in ("RGBA", "LA"):
        im = im.convert(im.mode[:-1])
    im.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save_image(path, pixels: np.ndarray, bit_depth: int = 8, alpha=None) -> None:
    """Write atomically; the format comes from the suffix."""
    path = Path(path)
    atomic_write_bytes(path, encode_image(pixels, path.suffix or ".png", bit_depth, alpha))


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) → (channels, H, W) for a network of that many input channels."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] == channels:
        out = pixels
    elif channels == 1:
        out = (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    else:
        out = np.repeat(pixels[..., :1], channels, axis=2) if pixels.shape[2] == 1 else pixels[..., :channels]
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def from_channels(chw: np.ndarray, like_grey: bool) -> np.ndarray:
    """(C, H, W) network output → (H, W) or (H, W, 3), matching the input's layout."""
    hwc = chw.transpose(1, 2, 0)
    if like_grey:
        return hwc.mean(axis=2) if hwc.shape[2] > 1 else hwc[..., 0]
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc


def output_stem(name, limit: int = 180) -> str:
    """An input's stem for naming results, cut to leave room for a suffix under the 255-byte limit."""
    stem = Path(name).stem
    while len(os.fsencode(stem)) > limit:
        stem = stem[:-1]
    return stem
