"""The headless workflow end to end on tiny inputs: train, resume, denoise, eval, export."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from denoise_studio.cli import main
from denoise_studio.core.inference import load_model
from tests.imagegen import TINY_SPEC, smooth_image, write_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    spec = root / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    data = write_folder(root / "data", n=6, size=48)
    run = root / "run"
    code = main(["train", str(spec), "--data", str(data), "--out", str(run), "--steps", "80", "--warmup", "5",
                 "--batch-size", "4", "--crop", "24", "--device", "cpu", "--sigma", "25", "--lr", "0.003",
                 "--eval-every", "20", "--checkpoint-every", "20", "--seed", "1"])
    assert code == 0
    return root, spec, data, run


def test_train_writes_a_run_and_prints_progress(trained, capsys):
    root, spec, data, run = trained
    lines = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert lines[-1]["event"] == "finished"
    assert json.loads((run / "config.json").read_text())["effective_batch_size"] == 4
    assert (run / "spec.json").is_file() and (run / "checkpoints" / "best.safetensors").is_file()


def test_resume_continues_to_more_steps(trained, capsys):
    root, spec, data, run = trained
    assert main(["train", "--out", str(run), "--resume", "--steps", "90"]) == 0
    out = capsys.readouterr().out
    assert "resumed from step 80" in out and "finished at step 90" in out
    assert main(["train", str(spec), "--out", str(run), "--steps", "5"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_denoise_with_sigma_prints_psnr_above_the_noisy_input(trained, capsys, tmp_path):
    root, _, _, run = trained
    img = tmp_path / "photo.png"
    Image.fromarray(smooth_image(64, 80, seed=42)).save(img)
    grey = tmp_path / "grey.png"
    Image.fromarray(smooth_image(40, 40, seed=5)[..., 0]).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([smooth_image(40, 40, seed=6), np.full((40, 40), 200, np.uint8)])).save(rgba)
    code = main(["denoise", str(run), str(img), str(grey), str(rgba), "--sigma", "25", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    first = out.splitlines()[0]
    noisy_db = float(first.split("noisy ")[1].split(" dB")[0])
    denoised_db = float(first.split("denoised ")[1].split(" dB")[0])
    assert denoised_db > noisy_db + 3
    assert Image.open(tmp_path / "o" / "photo_denoised.png").size == (80, 64)
    assert Image.open(tmp_path / "o" / "grey_denoised.png").mode == "L"
    assert Image.open(tmp_path / "o" / "rgba_denoised.png").mode == "RGBA"
    assert (tmp_path / "o" / "photo_noise.png").is_file() and (tmp_path / "o" / "photo_noisy.png").is_file()


def test_denoise_bad_images_are_skipped_with_their_name(trained, capsys, tmp_path):
    root, _, _, run = trained
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    good = tmp_path / "good.png"
    Image.fromarray(smooth_image(32, 32)).save(good)
    code = main(["denoise", str(run), str(bad), str(good), "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 2 and "bad.png" in captured.err and (tmp_path / "o" / "good_denoised.png").is_file()


def test_16_bit_input_gives_16_bit_output(trained, tmp_path, capsys):
    root, _, _, run = trained
    a = (smooth_image(32, 32)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(a).save(tmp_path / "deep.png")
    assert main(["denoise", str(run), str(tmp_path / "deep.png"), "--out", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "deep_denoised.png").mode.startswith("I")


def test_eval_compares_with_classical_baselines(trained, capsys):
    root, _, data, run = trained
    assert main(["eval", str(run), "--data", str(data), "--sigma", "25", "--json", "--limit", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["images"] == 2
    assert set(d["results"]) == {"noisy", "network", "gaussian", "median", "nl-means", "tv", "wavelet"}
    assert d["results"]["network"]["psnr"] > d["results"]["noisy"]["psnr"]
    assert main(["eval", str(run), "--data", str(data), "--sigma", "25", "--json", "--limit", "2", "--ensemble"]) == 0
    e = json.loads(capsys.readouterr().out)["results"]
    assert e["network"]["psnr"] != d["results"]["network"]["psnr"] and e["noisy"] == d["results"]["noisy"]
    assert abs(e["network"]["psnr"] - d["results"]["network"]["psnr"]) < 1.5   # the same network, averaged


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "python"])
def test_export_matches_pytorch(trained, tmp_path, capsys, fmt):
    root, _, _, run = trained
    out = tmp_path / {"onnx": "m.onnx", "torchscript": "m.pt", "python": "m.py"}[fmt]
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    lm = load_model(run, "cpu")
    x = torch.rand(2, 3, 40, 56)
    want = lm.model(x).detach().numpy()
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        got = ort.InferenceSession(str(out)).run(None, {"x": x.numpy()})[0]
    elif fmt == "torchscript":
        got = torch.jit.load(str(out))(x).detach().numpy()
    else:
        # runs in a fresh interpreter that imports only torch and safetensors
        weights = str(out.with_suffix(".safetensors"))
        script = (f"import sys, torch; sys.path.insert(0, {str(tmp_path)!r}); import m; from safetensors.torch "
                  f"import load_file; net = m.build_model(); net.load_state_dict(load_file({weights!r})); "
                  f"torch.manual_seed(0); x = torch.load({str(tmp_path / 'x.pt')!r}); "
                  "print(net.eval()(x).detach().numpy().tolist())")
        torch.save(x, tmp_path / "x.pt")
        assert "denoise_studio" not in out.read_text()
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        got = np.array(json.loads(res.stdout))
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("argv, words", [
    (["denoise", "nowhere", "x.png", "--out", "o"], "no such run folder"),
    (["export", "nowhere", "--format", "onnx", "--out", "o"], "no such run folder"),
    (["train", "residual", "--out", "{tmp}/r", "--device", "cuda:7", "--steps", "1"], "cuda:7"),
    (["train", "seed-simple", "--out", "{tmp}/r2", "--steps", "1"], "GroupNorm(8, 3)"),
])
def test_errors_are_one_line_exit_2(argv, words, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_pickled_checkpoint_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"a": 1}, evil)
    assert main(["denoise", str(evil), "x.png", "--out", str(tmp_path / "o")]) == 2
    assert "never unpickles" in capsys.readouterr().err


def test_ema_reaches_the_config_and_one_is_refused_in_one_line(capsys):
    import argparse

    from denoise_studio.cli import main
    from denoise_studio.core.plan import TrainConfig
    from denoise_studio.train_commands import train_config_from_args
    args = argparse.Namespace(ema=0.0, steps=10)
    assert train_config_from_args(args).ema == 0.0
    assert train_config_from_args(argparse.Namespace(steps=10)).ema == TrainConfig().ema == 0.999
    assert main(["train", "unet-small", "--ema", "1", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ema is 1.0; it must be a number at least 0 and at most 0.99999" in err and len(err.splitlines()) == 1
