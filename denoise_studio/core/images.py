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

from denoise_studio.core import limits
from denoise_studio.core.errors import ImageError
from denoise_studio.core.fileio import atomic_write_bytes, open_regular

MAX_PIXELS = limits.CAPS["IMAGE_PIXELS"][0]   # the default; load_image uses limits.cap("IMAGE_PIXELS")
# Bytes per pixel and channel while decoding: Pillow's 8-bit copy, our float32 array, a converted copy.
DECODE_BYTES = 1 + 4 + 4
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


def _check_size(name: str, w: int, h: int, bands: int, plan_bytes) -> None:
    """Caps on the header's size, and one memory estimate (decoding plus what the caller will do
    with the image), all before a single pixel is decoded."""
    try:
        limits.check_cap("IMAGE_SIDE", max(w, h), f"{name}: its {'width' if w >= h else 'height'} in pixels")
        limits.check_cap("IMAGE_PIXELS", w * h, f"{name}: its pixel count ({w}×{h})")
        needed = w * h * max(bands, 1) * DECODE_BYTES + (plan_bytes(h, w) if plan_bytes else 0)
        limits.check_memory(needed, f"{name} ({w}×{h})", "crop or resize it, or use a smaller --tile.")
    except limits.LimitError as e:   # callers skip an unreadable image; a too-large one is one of those
        raise ImageError(str(e)) from None


def load_image(path, plan_bytes=None) -> LoadedImage:
    """Load any supported image, or raise ImageError naming the file and the problem.

    Only a regular file under the IMAGE_BYTES cap is opened (a FIFO would block forever);
    IMAGE_SIDE and IMAGE_PIXELS are checked from the header. plan_bytes(h, w), when given,
    estimates the memory the caller will need next; it is checked with the decode cost."""
    path = Path(path)
    name = str(path)
    try:
        limits.check_cap("IMAGE_BYTES", os.stat(path).st_size if path.is_file() else 0,
                         f"{name}: its file size in bytes")
    except limits.LimitError as e:
        raise ImageError(str(e)) from None
    except OSError:
        pass   # open_regular below says what is wrong with the path
    pixel_cap = limits.cap("IMAGE_PIXELS")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = pixel_cap   # Pillow's own check at open: the same cap
            with open_regular(path, "file", limits.cap("IMAGE_BYTES"), ImageError) as f, Image.open(f) as im:
                w, h = im.size
                bands = 4 if im.mode in ("P", "PA") else len(im.getbands())   # a palette decodes to RGBA
                _check_size(name, w, h, bands, plan_bytes)
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
        raise ImageError(f"{name} is too large to decode safely (over {pixel_cap:,} pixels, a possible "
                         "decompression bomb); crop or resize it first, or raise the limit with "
                         "DENOISE_STUDIO_MAX_IMAGE_PIXELS=N.") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode it; crop or resize it first.") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{name} is truncated or corrupt ({why}).") from None
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


IMAGE_CHANNELS = (1, 3)   # what images hold once alpha is set aside: grey or colour


def check_channels(channels: int) -> None:
    """Images are grey or RGB; a network taking any other number of channels cannot run on them
    (guessing, e.g. RGB → 2 channels, would give an LA PNG or a silently wrong result)."""
    if channels not in IMAGE_CHANNELS:
        raise ImageError(f"the network takes {channels} input channels (in_channels {channels}), but images have "
                         "1 (grey) or 3 (RGB); use a network with in_channels 1 or 3.")


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) → (channels, H, W) for a network of 1 or 3 input channels: colour is
    turned to grey (luma) for a grey network, grey repeated for a colour one."""
    check_channels(channels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] not in IMAGE_CHANNELS:
        raise ImageError(f"an image of {pixels.shape[2]} channels; images must be grey or RGB.")
    if pixels.shape[2] == channels:
        out = pixels
    elif channels == 1:
        out = (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    else:
        out = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def from_channels(chw: np.ndarray, like_grey: bool) -> np.ndarray:
    """(C, H, W) network output (C 1 or 3) → (H, W) or (H, W, 3), matching the input's layout."""
    check_channels(chw.shape[0])
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


def plan_outputs(inputs, out_dir, kinds=("denoised",), suffix: str = ".png") -> list[dict[str, Path]]:
    """For each input, {kind: out_dir/<stem>_<kind><suffix>}: every name distinct from every other
    result and from every input, by construction.

    The rule: results are named after the input's stem; when that would clash (two inputs named
    x.png in different folders, x.png and x.jpg, or a result that would land on an input such as
    img.png's img_noise.png), the later input gets <stem>-2, <stem>-3, … in command-line order.
    Names are compared case-insensitively, so the plan also holds on macOS and Windows disks."""
    out_dir = Path(out_dir)
    resolved = [os.path.realpath(p) for p in inputs]
    # An input that is a symlink: neither the link (os.replace would swap it) nor its target.
    as_named = [os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(p))), os.path.basename(p))
                for p in inputs]
    taken = {p.casefold() for p in resolved + as_named}
    identities = set()
    for p in resolved:   # hard links and other aliases of an input
        try:
            st = os.stat(p)
            identities.add((st.st_dev, st.st_ino))
        except OSError:
            pass

    def is_input(path: Path) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in identities

    base = os.path.realpath(out_dir)
    plans = []
    for name in inputs:
        stem = output_stem(name)
        # Each input and each earlier plan blocks at most one n of this stem: 2·len + 1 tries suffice.
        for n in range(1, 2 * len(inputs) + 2):
            candidate = stem if n == 1 else f"{stem}-{n}"
            paths = {k: out_dir / f"{candidate}_{k}{suffix}" for k in kinds}
            keys = [os.path.join(base, p.name).casefold() for p in paths.values()]
            if not any(k in taken for k in keys) and not any(is_input(p) for p in paths.values()):
                break
        else:   # unreachable: each input takes one name, so some n in range is free
            raise ImageError(f"{name}: no free name for its results in {out_dir}.")
        taken.update(keys)
        plans.append(paths)
    return plans
