"""A corpus of bad and odd image files, generated (nothing committed): each case names what a
reader must do with it: "load" (a correct image) or "error" (one clear message naming it)."""
import io
import os

import numpy as np
from PIL import Image

from denoise_studio.core.images import MAX_PIXELS
from tests.imagegen import smooth_image


def _bytes(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_corpus(folder) -> dict:
    """Writes the corpus into folder; returns {path: "load" | "error"}."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(smooth_image(40, 48))
    cases = {}

    def put(name, data, expect):
        p = folder / name
        p.write_bytes(data)
        cases[p] = expect

    put("truncated.png", _bytes(rgb, "PNG")[:120], "error")
    put("truncated.jpg", _bytes(rgb, "JPEG")[:300], "error")
    put("truncated.tif", _bytes(rgb, "TIFF")[:200], "error")
    put("zero.png", b"", "error")
    put("text.png", b"this is a text file with an image name\n", "error")
    put("one_pixel.png", _bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "load")
    put("thin.png", _bytes(Image.new("L", (10000, 1), 90), "PNG"), "load")
    put("deep16.tif", _bytes(Image.fromarray((np.arange(40 * 48).reshape(40, 48) * 30).astype(np.uint16)), "TIFF"),
        "load")
    put("float.tif", _bytes(Image.fromarray(np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(40, 48)), "TIFF"),
        "load")
    put("cmyk.jpg", _bytes(rgb.convert("CMYK"), "JPEG"), "load")
    put("palette.png", _bytes(rgb.convert("P"), "PNG"), "load")
    put("la.png", _bytes(rgb.convert("LA"), "PNG"), "load")
    frames = [rgb, Image.fromarray(255 - np.asarray(rgb))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    put("animated.gif", buf.getvalue(), "load")
    side = int(MAX_PIXELS ** 0.5) + 10
    put("bomb.png", _bytes(Image.new("1", (side, side)), "PNG"), "error")
    exif = rgb.getexif()
    exif[0x0112] = 8
    put("rotated.jpg", _bytes(rgb, "JPEG", exif=exif), "load")
    put(os.fsdecode(b"caf\xe9-latin1.png"), _bytes(rgb, "PNG"), "load")       # not UTF-8
    put("long-" + "x" * 230 + ".png", _bytes(rgb, "PNG"), "load")              # near the 255-byte limit
    put("wrong-extension.jpg", _bytes(rgb, "PNG"), "load")                      # a PNG named .jpg
    return cases
