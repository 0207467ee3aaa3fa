"""Every path that reads images gives each bad file a defined result: a correct load or one
clear message naming the file. No traceback, no hang, no crash."""
import json
import os
import subprocess
import sys

import pytest

from denoise_studio.core.data import ImageSet
from denoise_studio.core.errors import ImageError
from denoise_studio.core.images import load_image
from tests.badinputs import make_corpus
from tests.imagegen import TINY_SPEC, write_folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    cases = make_corpus(folder / "images")
    (folder / "images" / "loop").symlink_to(folder / "images")      # a folder containing a symlink loop
    return folder, cases


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.spec import spec_from_dict
    from denoise_studio.core.trainer import TrainConfig, Trainer
    root = tmp_path_factory.mktemp("model")
    spec = spec_from_dict(TINY_SPEC)
    cfg = TrainConfig(steps=3, batch_size=2, crop=16, device="cpu", eval_every=3)
    run = RunFolder.create(root / "run", spec, cfg.to_dict())
    Trainer(spec, cfg, run=run, images=ImageSet.load(write_folder(root / "d", n=2, size=32))).run()
    return root / "run"


def test_the_loader_gives_each_case_its_defined_result(corpus):
    _, cases = corpus
    for path, expect in cases.items():
        if expect == "load":
            im = load_image(path)
            assert im.pixels.size > 0 and 0 <= im.pixels.min() and im.pixels.max() <= 1, path
        else:
            with pytest.raises(ImageError) as e:
                load_image(path)
            assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_unreadable_permissions(tmp_path, monkeypatch):
    p = tmp_path / "secret.png"
    p.write_bytes(b"x")
    p.chmod(0)
    if os.geteuid() == 0:
        # root reads every file whatever its mode, so make the open fail as it would for a user
        from PIL import Image

        def denied(*a, **k):
            raise PermissionError(13, "Permission denied", str(p))
        monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageError, match="permission denied") as e:
        load_image(p)
    assert "secret.png" in str(e.value)


def test_cli_denoise_over_the_corpus(corpus, model_run, tmp_path):
    folder, cases = corpus
    names = [os.fsencode(p) for p in cases]
    res = subprocess.run([os.fsencode(sys.executable), b"-m", b"denoise_studio", b"denoise",
                          os.fsencode(model_run), *names, b"--out", os.fsencode(tmp_path / "out")],
                         capture_output=True, timeout=300)
    err = res.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert res.returncode == 2   # some inputs were skipped
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == sum(1 for v in cases.values() if v == "error")
    written = os.listdir(tmp_path / "out")
    assert sum(1 for n in written if n.endswith("_denoised.png")) == sum(1 for v in cases.values() if v == "load")


def test_train_and_eval_skip_bad_files_by_name(corpus, model_run, tmp_path, capsys):
    folder, cases = corpus
    s = ImageSet.load(folder / "images")
    assert len(s.train) + len(s.val) == sum(1 for v in cases.values() if v == "load")
    assert len(s.skipped) == sum(1 for v in cases.values() if v == "error")
    from denoise_studio.cli import main
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    assert main(["train", str(spec), "--data", str(folder / "images"), "--out", str(tmp_path / "r"),
                 "--steps", "2", "--batch-size", "2", "--crop", "16", "--device", "cpu"]) == 0
    assert main(["eval", str(model_run), "--data", str(folder / "images"), "--sigma", "25", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and err.count("skipped:") == 2 * len(s.skipped)   # train, then eval
    assert json.loads(out[out.index("{"):])["images"] == len(s.train) + len(s.val)
