"""`denoise-studio sample`: a grid PNG, the same for the same seed, a trajectory on request, and one
line for runs and settings that cannot sample."""
import numpy as np
import pytest
from PIL import Image

from denoise_studio.cli import main
from tests.imagegen import train_tiny_run


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("ddpm") / "run", noise="ddpm", timesteps=30)


def test_grid_png_has_n_tiles_and_is_the_same_for_the_same_seed(ddpm_run, tmp_path, capsys):
    args = ["sample", str(ddpm_run), "--n", "6", "--steps", "5", "--scale", "2"]
    assert main(args + ["--out", str(tmp_path / "a.png"), "--seed", "4"]) == 0
    assert main(args + ["--out", str(tmp_path / "b.png"), "--seed", "4"]) == 0
    assert main(args + ["--out", str(tmp_path / "c.png"), "--seed", "5"]) == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{k}.png")) for k in "abc")
    # 6 samples of the run's 16² crop: 3 columns × 2 rows with 2-pixel gaps, enlarged 2×
    assert a.shape == (2 * (2 * 18 - 2), 2 * (3 * 18 - 2), 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert "6 samples, ddim with 5 steps, seed 4" in capsys.readouterr().out


def test_frames_write_a_trajectory(ddpm_run, tmp_path):
    frames = tmp_path / "frames"
    assert main(["sample", str(ddpm_run), "--n", "2", "--sampler", "ddpm", "--out", str(tmp_path / "g.png"),
                 "--frames", str(frames)]) == 0
    names = sorted(p.name for p in frames.iterdir())
    assert "trajectory.png" in names and "trajectory.gif" in names
    xt = [n for n in names if n.startswith("xt_")]
    assert 5 <= len(xt) <= 32 and xt[-1] == "xt_0030.png"   # ddpm: all T = 30 steps, about 10 kept
    gif = Image.open(frames / "trajectory.gif")
    assert gif.n_frames == len(xt)


def test_existing_output_needs_overwrite(ddpm_run, tmp_path, capsys):
    out = tmp_path / "g.png"
    out.write_bytes(b"mine")
    assert main(["sample", str(ddpm_run), "--n", "1", "--steps", "2", "--out", str(out)]) == 2
    assert out.read_bytes() == b"mine"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["sample", str(ddpm_run), "--n", "1", "--steps", "2", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, words", [
    (["--steps", "31"], "1…30"),
    (["--n", "0"], "at least 1"),
    (["--n", "100000000"], "DENOISE_STUDIO_MAX_SAMPLES"),
    (["--eta", "nan"], "finite"),
    (["--seed", "-1"], "seed"),
])
def test_bad_settings_are_one_line(ddpm_run, tmp_path, capsys, extra, words):
    assert main(["sample", str(ddpm_run), "--out", str(tmp_path / "g.png"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and not (tmp_path / "g.png").exists()


def test_a_gaussian_run_says_what_to_train_instead(tmp_path, capsys):
    run = train_tiny_run(tmp_path / "gauss", noise="gaussian")
    assert main(["sample", str(run), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "--noise ddpm" in err and len(err.strip().splitlines()) == 1


def test_train_with_shapes_takes_its_recipe_unless_told_otherwise(tmp_path):
    import json
    assert main(["train", "shapes-unet", "--data", "shapes", "--steps", "1", "--batch-size", "2",
                 "--out", str(tmp_path / "r")]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (cfg["noise"], cfg["schedule"], cfg["crop"], cfg["batch_size"]) == ("ddpm", "cosine", 32, 2)


def test_amp_chooses_the_networks_precision_and_bf16_stays_close_to_fp32(ddpm_run, tmp_path, capsys):
    args = ["sample", str(ddpm_run), "--n", "4", "--steps", "5", "--scale", "1", "--seed", "2"]
    assert main(args + ["--out", str(tmp_path / "fp32.png"), "--amp", "off"]) == 0
    assert "fp32" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "bf16.png"), "--amp", "bf16"]) == 0
    assert "bf16 autocast" in capsys.readouterr().out
    fp32, bf16 = (np.asarray(Image.open(tmp_path / f"{k}.png")).astype(float) for k in ("fp32", "bf16"))
    assert not np.array_equal(fp32, bf16)          # the precision really changed
    assert np.abs(fp32 - bf16).mean() < 8          # and the images are the same ones (0–255 scale)
