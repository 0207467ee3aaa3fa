"""Every odd image file is a correct load or one clear ImageError naming the file."""
import io

import numpy as np
import pytest
from PIL import Image

from denoise_studio.core.errors import ImageError
from denoise_studio.core.images import MAX_PIXELS, load_image, save_image
from tests.imagegen import smooth_image

RGB = smooth_image(20, 30)


def save(tmp_path, name, im, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_rgb_grey_and_formats(tmp_path):
    for name in ("a.png", "a.bmp", "a.webp", "a.tif", "a.jpg"):
        im = load_image(save(tmp_path, name, Image.fromarray(RGB), **({"lossless": True} if "webp" in name else {})))
        assert im.pixels.shape == (20, 30, 3) and im.bit_depth == 8 and im.alpha is None
        if not name.endswith("jpg"):
            assert np.allclose(im.pixels, RGB / 255.0, atol=1e-6)
    grey = load_image(save(tmp_path, "g.png", Image.fromarray(RGB[..., 0])))
    assert grey.grey and grey.pixels.shape == (20, 30)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    a = (np.linspace(0, 65535, 600).reshape(20, 30)).astype(np.uint16)
    for name in ("g16.png", "g16.tif"):
        im = load_image(save(tmp_path, name, Image.fromarray(a)))
        assert im.bit_depth == 16
        assert np.allclose(im.pixels, a / 65535.0, atol=1e-6)
    f = load_image(save(tmp_path, "f.tif", Image.fromarray((a / 65535.0).astype(np.float32))))
    assert np.allclose(f.pixels, a / 65535.0, atol=1e-6)


def test_16_bit_rgb_png_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (9, 7, 3)).astype(np.float32) / 65535.0
    save_image(tmp_path / "o.png", pixels, bit_depth=16)
    back = load_image(tmp_path / "o.png")
    assert back.bit_depth in (8, 16)
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode.startswith("RGB") and im.size == (7, 9)


def test_alpha_is_kept_aside_and_palette_la_cmyk(tmp_path):
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)])
    im = load_image(save(tmp_path, "a.png", Image.fromarray(rgba)))
    assert im.pixels.shape == (20, 30, 3) and np.allclose(im.alpha, 128 / 255)
    la = load_image(save(tmp_path, "la.png", Image.fromarray(rgba[..., [0, 3]], "LA")))
    assert la.grey and la.alpha is not None
    pal = load_image(save(tmp_path, "p.png", Image.fromarray(RGB).convert("P")))
    assert pal.pixels.shape == (20, 30, 3)
    cmyk = load_image(save(tmp_path, "c.jpg", Image.fromarray(RGB).convert("CMYK")))
    assert cmyk.pixels.shape == (20, 30, 3)
    save_image(tmp_path / "out.png", im.pixels, alpha=im.alpha)
    assert Image.open(tmp_path / "out.png").mode == "RGBA"


def test_exif_rotation_and_animated_gif(tmp_path):
    im = Image.fromarray(RGB)
    exif = im.getexif()
    exif[0x0112] = 6   # rotate 90° on display
    rotated = load_image(save(tmp_path, "r.jpg", im, exif=exif))
    assert rotated.pixels.shape[:2] == (30, 20)
    frames = [Image.fromarray(RGB), Image.fromarray(255 - RGB)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "anim.gif").pixels.shape == (20, 30, 3)


@pytest.mark.parametrize("maker, words", [
    (lambda p: p.write_bytes(b""), "not an image"),
    (lambda p: p.write_text("hello, I am text"), "not an image"),
    (lambda p: p.write_bytes(_png_bytes()[:60]), "truncated or corrupt"),
    (lambda p: p.write_bytes(_png_bytes()[:-40]), "truncated or corrupt"),
])
def test_bad_files_give_one_clear_error_naming_the_file(tmp_path, maker, words):
    p = tmp_path / "bad.png"
    maker(p)
    with pytest.raises(ImageError, match=words) as e:
        load_image(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_folder_and_bomb(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "none.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    side = int(MAX_PIXELS ** 0.5) + 10
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")   # a few KB on disk, huge decoded
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "bomb.png")


def test_tiny_and_thin_images_load(tmp_path):
    assert load_image(save(tmp_path, "1.png", Image.new("RGB", (1, 1)))).pixels.shape == (1, 1, 3)
    assert load_image(save(tmp_path, "t.png", Image.new("L", (10000, 1)))).pixels.shape == (1, 10000)


def _png_bytes():
    buf = io.BytesIO()
    Image.fromarray(smooth_image(64, 64)).save(buf, format="PNG")
    return buf.getvalue()
