"""`export` never replaces a file silently: every file it would write (python: the code and its
.safetensors) is checked before the model is loaded; an existing one is one line (exit 2) and
nothing is written, unless --overwrite."""
import os

import pytest
from safetensors.torch import load_file

from denoise_studio.cli import main
from denoise_studio.core.checkpoint import save_checkpoint
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.network import build_network
from denoise_studio.core.spec import spec_from_dict
from tests.imagegen import TINY_SPEC

MINE = b"the user's own file"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "c.safetensors"
    save_checkpoint(path, build_network(spec_from_dict(TINY_SPEC)), {"spec": TINY_SPEC, "step": 1})
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files(folder):
    return {p.name: (os.readlink(p) if p.is_symlink() else p.read_bytes()) for p in folder.iterdir()}


# (format, --out, the files that exist already): every file an export writes, alone and together
CLASHES = [("onnx", "m.onnx", ["m.onnx"]), ("torchscript", "m.pt", ["m.pt"]), ("python", "m.py", ["m.py"]),
           ("python", "m.py", ["m.safetensors"]), ("python", "m.py", ["m.py", "m.safetensors"]),
           ("python", "m", ["m.safetensors"])]


@pytest.mark.parametrize("fmt, out, present", CLASHES, ids=lambda v: str(v))
def test_an_existing_output_is_refused_before_the_model_is_loaded(tmp_path, capsys, fmt, out, present):
    for name in present:
        (tmp_path / name).write_bytes(MINE)
    before = files(tmp_path)
    # the run does not exist: only a check made before loading can give the clash as the error
    code, stdout, err = run(capsys, "export", tmp_path / "no-such-run", "--format", fmt, "--out", tmp_path / out)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "add --overwrite to replace" in err and "Traceback" not in err
    assert all(str(tmp_path / name) in err for name in present), err
    assert files(tmp_path) == before


def test_a_link_at_the_output_is_a_file_of_the_users(tiny, tmp_path, capsys):
    (tmp_path / "target.pt").write_bytes(MINE)
    os.symlink(tmp_path / "target.pt", tmp_path / "m.pt")
    code, _, err = run(capsys, "export", tiny, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert code == 2 and "m.pt already exists" in err
    assert files(tmp_path) == {"m.pt": str(tmp_path / "target.pt"), "target.pt": MINE}


@pytest.mark.parametrize("fmt, out, present", [CLASHES[1], CLASHES[4]], ids=["torchscript", "python"])
def test_overwrite_replaces_every_output(tiny, tmp_path, capsys, fmt, out, present):
    for name in present:
        (tmp_path / name).write_bytes(MINE)
    code, stdout, err = run(capsys, "export", tiny, "--format", fmt, "--out", tmp_path / out, "--overwrite")
    assert code == 0 and err == ""
    assert stdout.split() == [w for name in present for w in ("wrote", str(tmp_path / name))]
    assert sorted(files(tmp_path)) == sorted(present)
    for name in present:
        assert (tmp_path / name).read_bytes() != MINE
    if fmt == "python":
        compile((tmp_path / "m.py").read_text(), "m.py", "exec")
        assert set(load_file(tmp_path / "m.safetensors")) == set(build_network(spec_from_dict(TINY_SPEC)).state_dict())


def test_a_fresh_output_needs_no_flag(tiny, tmp_path, capsys):
    code, stdout, _ = run(capsys, "export", tiny, "--format", "torchscript", "--out", tmp_path / "new" / "m.pt")
    assert code == 0 and stdout.split() == ["wrote", str(tmp_path / "new" / "m.pt")]
    assert (tmp_path / "new" / "m.pt").stat().st_size > 1000


def test_core_export_checks_again_at_write_time(tiny, tmp_path):
    """A file that appears while the model loads is still not replaced: export() re-checks."""
    from denoise_studio.core.export import export, export_paths
    from denoise_studio.core.inference import load_model
    out = tmp_path / "m.py"
    assert export_paths("python", out) == [out, tmp_path / "m.safetensors"]
    lm = load_model(tiny, "cpu")
    (tmp_path / "m.safetensors").write_bytes(MINE)
    with pytest.raises(DenoiseError, match=r"m\.safetensors already exists; add --overwrite to replace it, or "
                                           r"choose another --out\.$"):
        export(lm, "python", out)
    assert files(tmp_path) == {"m.safetensors": MINE}
    assert export(lm, "python", out, overwrite=True) == [out, tmp_path / "m.safetensors"]
    assert (tmp_path / "m.safetensors").read_bytes() != MINE
