"""train --objective n2v|ne2ne from noisy images alone, eval --noise, and their refusals: one line on
stderr, exit 2, no run folder left behind."""
import json

import numpy as np
import pytest
from PIL import Image

from denoise_studio.cli import main
from tests.imagegen import TINY_SPEC, smooth_image, write_folder

FAST = ["--steps", "30", "--batch-size", "4", "--crop", "32", "--device", "cpu", "--eval-every", "15",
        "--warmup", "3"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    spec = root / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    clean = write_folder(root / "clean", n=6, size=48)
    noisy = root / "noisy"
    noisy.mkdir()
    for i in range(6):
        sigma = 25 if i < 3 else 5   # two noise levels: trained anyway, with a note
        img = smooth_image(48, 48, seed=i).astype(np.float32)
        img += np.random.default_rng(i).normal(0, sigma, img.shape)
        Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8)).save(noisy / f"n{i}.png")
    return root, spec, clean, noisy


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_n2v_trains_on_a_folder_of_noisy_images_and_records_the_objective(folders, capsys):
    root, spec, _, noisy = folders
    run = root / "run-n2v"
    code, out, err = _run(capsys, ["train", str(spec), "--objective", "n2v", "--data", str(noisy), "--out", str(run),
                                   *FAST])
    assert code == 0, err
    assert "note: the images' estimated noise σ ranges from" in err and "training anyway" in err
    assert "validation loss" in out and "no clean images" in out
    config = json.loads((run / "config.json").read_text())
    assert config["objective"] == "n2v" and config["synthetic_noise"] is False
    # A resume keeps the objective; a config.json without one cannot be resumed without guessing.
    assert _run(capsys, ["train", "--out", str(run), "--resume", "--steps", "35"])[0] == 0
    del config["objective"]
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = _run(capsys, ["train", "--out", str(run), "--resume", "--steps", "40"])
    assert code == 2 and "lacks objective" in err and len(err.strip().splitlines()) == 1


def test_ne2ne_with_synthetic_noise_on_clean_images_reports_psnr_and_evals_with_poisson_gaussian(folders, capsys):
    root, spec, clean, _ = folders
    run = root / "run-ne2ne"
    code, out, err = _run(capsys, ["train", str(spec), "--objective", "ne2ne", "--data", str(clean), "--out", str(run),
                                   "--noise", "poisson-gaussian", "--gain", "4", "--read", "10", *FAST])
    assert code == 0, err
    assert "validation PSNR" in out and "on the data's poisson-gaussian noise" in out
    config = json.loads((run / "config.json").read_text())
    assert config["synthetic_noise"] is True and (config["gain"], config["read"]) == (4.0, 10.0)
    code, out, err = _run(capsys, ["eval", str(run), "--data", str(clean), "--noise", "poisson-gaussian",
                                   "--limit", "2", "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["noise"] == {"noise": "poisson-gaussian", "gain": 4.0, "read": 10.0}
    # Var = 4·x₀ + 100 on 0–255: about 24.7 dB of noise on mid-grey images, far from noise-free.
    assert 15 < report["results"]["noisy"]["psnr"] < 26


@pytest.mark.parametrize("args, message", [
    (["--objective", "n2v", "--data", "{clean}"], "the images look clean (median estimated noise σ"),
    (["--objective", "ne2ne", "--data", "{noisy}", "--noise", "ddpm"], "ne2ne learns to denoise images, not diffusion"),
    (["--objective", "n2v", "--data", "{clean}", "--noise", "correlated", "--sigma", "25"],
     "n2v assumes noise independent from pixel to pixel"),
    (["--objective", "noise2self", "--data", "{noisy}"], "argument --objective: invalid choice: 'noise2self'"),
    (["--noise", "poisson-gaussian", "--gain", "0"], "0 is out of range: give a number above 0 and at most 255"),
    (["--noise", "correlated", "--blur", "0.1"], "blur must be a kernel std from 0.3 to 5 pixels"),
    (["--noise", "correlated", "--blur", "9"], "blur is 9.0; it must be a number above 0 and at most 5"),
])
def test_train_refusals_are_one_line_and_leave_no_run_folder(folders, capsys, args, message):
    root, spec, clean, noisy = folders
    out = root / "refused"
    argv = ["train", str(spec), *[a.format(clean=clean, noisy=noisy) for a in args], "--out", str(out), *FAST]
    code, _, err = _run(capsys, argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_single_noisy_image_trains_on_its_crops_with_a_note(folders, capsys):
    root, spec, _, noisy = folders
    run = root / "run-one"
    code, _, err = _run(capsys, ["train", str(spec), "--objective", "ne2ne", "--data", str(noisy / "n0.png"),
                                 "--out", str(run), *FAST])
    assert code == 0, err
    assert "note: one image: ne2ne trains on random crops of it and validates on its centre crops." in err


@pytest.mark.parametrize("args, message", [
    (["--noise", "correlated"], "correlated noise needs --sigma"),
    (["--noise", "poisson-gaussian", "--sigma", "25"], "set by --gain and --read, not --sigma"),
    (["--sigma", "25", "--gain", "4"], "belong to other noise models than gaussian"),
])
def test_eval_noise_options_that_do_not_fit_are_one_line(folders, capsys, args, message):
    root, _, clean, _ = folders
    code, _, err = _run(capsys, ["eval", str(root / "run-n2v"), "--data", str(clean), *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_eval_correlated_noise_is_applied_and_reported(folders, capsys):
    root, _, clean, _ = folders
    code, out, err = _run(capsys, ["eval", str(root / "run-n2v"), "--data", str(clean), "--noise", "correlated",
                                   "--sigma", "20", "--blur", "1.5", "--limit", "1"])
    assert code == 0, err
    assert "correlated noise, σ = 20, blur 1.5 px" in out
    noisy_db = float(next(line for line in out.splitlines() if line.startswith("noisy")).split()[1])
    assert noisy_db == pytest.approx(20 * np.log10(255 / 20), abs=0.6)   # σ 20 per pixel, whatever the blur
