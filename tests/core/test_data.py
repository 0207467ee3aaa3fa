import pytest
import torch
from PIL import Image

from denoise_studio.core.data import ImageSet, find_images, sample_batch, step_generator, validation_crops
from denoise_studio.core.errors import DataError
from tests.imagegen import smooth_image, write_folder


def test_folder_is_recursive_and_unreadable_files_are_skipped_by_name(tmp_path):
    write_folder(tmp_path / "a", n=4)
    write_folder(tmp_path / "a" / "sub", n=2)
    (tmp_path / "a" / "broken.png").write_bytes(b"nope")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    s = ImageSet.load(tmp_path / "a")
    assert len(s.train) + len(s.val) == 6
    assert len(s.val) == 1
    assert len(s.skipped) == 1 and "broken.png" in s.skipped[0]


def test_empty_or_unreadable_folder_is_a_clear_error(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        ImageSet.load(tmp_path / "e")
    (tmp_path / "e" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of its 1 image"):
        ImageSet.load(tmp_path / "e")
    with pytest.raises(DataError, match="no such folder"):
        ImageSet.load(tmp_path / "missing")


def test_symlink_loop_does_not_hang(tmp_path):
    write_folder(tmp_path / "d", n=2)
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")
    assert len(find_images(tmp_path / "d")) == 2


def test_grey_and_16_bit_images_join_an_rgb_set(tmp_path):
    Image.fromarray(smooth_image(40, 40)[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(smooth_image(40, 40)[..., 0].astype("uint16") * 257).save(tmp_path / "g16.png")
    s = ImageSet.load(tmp_path)
    assert all(t.shape[0] == 3 for t in s.train + s.val)
    assert {t.dtype for t in s.train + s.val} == {torch.uint8, torch.float32}


def test_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    s = ImageSet.load(write_folder(tmp_path, n=5))
    a = sample_batch(s.train, 4, 16, step_generator(0, 7))
    b = sample_batch(s.train, 4, 16, step_generator(0, 7))
    c = sample_batch(s.train, 4, 16, step_generator(0, 8))
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1


def test_small_images_are_padded_to_the_crop_and_builtin_loads():
    tiny = [torch.rand(3, 10, 12)]
    assert sample_batch(tiny, 2, 16, step_generator(1, 1)).shape == (2, 3, 16, 16)
    assert validation_crops(tiny, 16).shape[1:] == (3, 16, 16)
    s = ImageSet.load("builtin")
    assert len(s.train) >= 8 and len(s.val) >= 2
