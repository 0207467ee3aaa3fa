"""Export against hostile input: spec text that tries to become code, and --out paths that would
overwrite a folder or put code and weights in one file. Each is one line (exit 2) or a correct file."""
import json
import os
import subprocess
import sys

import pytest

from denoise_studio.cli import main
from denoise_studio.core.checkpoint import save_checkpoint
from denoise_studio.core.network import build_network, network_code
from denoise_studio.core.spec import spec_from_dict
from tests.imagegen import TINY_SPEC

MARKER = "PWNED_MARKER"
# each would run code, or break the file, if pasted into the module unescaped
HOSTILE = [f'x"""\nimport os; open("{MARKER}", "w").close()\n"""',
           f"x'''\nimport os; open('{MARKER}', 'w').close()\n'''",
           "\\N{nope}", "ends in a backslash\\", f"a\u2028import os; open('{MARKER}','w')\u2029b",
           "nul\x00byte", f"\r\nimport os; open('{MARKER}', 'w').close()\r\n#", "{x}{{", "\udcff".encode(
               "utf-8", "surrogateescape").decode("utf-8", "replace"), "'; import os #"]


def hostile_spec(text: str) -> dict:
    blocks = [dict(b) for b in TINY_SPEC["blocks"]]
    blocks[0]["id"] = text
    blocks.insert(2, {"type": "merge", "from": text, "mode": "add"})
    return {**TINY_SPEC, "name": text, "description": text, "blocks": blocks}


def checkpoint(tmp_path, spec: dict, name="c.safetensors"):
    path = tmp_path / name
    save_checkpoint(path, build_network(spec_from_dict(spec)), {"spec": spec, "step": 1})
    return path


def test_hostile_text_through_every_code_generator(tmp_path):
    """network_code directly and through `export --format python`: each module compiles, imports
    in a fresh interpreter without running injected code, and builds the same state_dict keys."""
    keys = []
    for i, text in enumerate(HOSTILE):
        spec = spec_from_dict(hostile_spec(text))
        code = network_code(spec)
        compile(code, f"m{i}.py", "exec")
        (tmp_path / f"direct{i}.py").write_text(code)
        assert main(["export", str(checkpoint(tmp_path, hostile_spec(text), f"c{i}.safetensors")),
                     "--format", "python", "--out", str(tmp_path / f"cli{i}.py")]) == 0
        keys.append(sorted(build_network(spec).state_dict()))
    script = ("import importlib, json, sys; sys.path.insert(0, sys.argv[1]); out = []\n"
              f"for i in range({len(HOSTILE)}):\n"
              "    for kind in ('direct', 'cli'):\n"
              "        m = importlib.import_module(f'{kind}{i}')\n"
              "        out.append([m.NAME, sorted(m.build_model().state_dict())])\n"
              "print(json.dumps(out))")
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    assert [g[0] for g in got] == [t for t in HOSTILE for _ in range(2)]   # the name, intact, as data
    assert [g[1] for g in got] == [k for k in keys for _ in range(2)]
    assert not list(tmp_path.rglob(MARKER)) and not os.path.exists(MARKER)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("ck"), TINY_SPEC)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "python"])
def test_export_to_an_existing_folder_is_one_line(tiny, tmp_path, capsys, fmt):
    folder = tmp_path / "existing"
    folder.mkdir()
    code, _, err = run(capsys, "export", str(tiny), "--format", fmt, "--out", str(folder))
    assert code == 2 and "is a folder; give a file name" in err and len(err.strip().splitlines()) == 1
    assert list(folder.iterdir()) == [] and "Traceback" not in err


@pytest.mark.parametrize("out", ["net.safetensors", "dir/net.safetensors"])
def test_python_export_never_puts_code_and_weights_in_one_file(tiny, tmp_path, capsys, out):
    code, _, err = run(capsys, "export", str(tiny), "--format", "python", "--out", str(tmp_path / out))
    assert code == 2 and "is where the weights go; name the code file net.py" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / out).exists()


def test_python_export_refuses_when_its_weights_path_is_a_folder(tiny, tmp_path, capsys):
    (tmp_path / "net.safetensors").mkdir()
    code, _, err = run(capsys, "export", str(tiny), "--format", "python", "--out", str(tmp_path / "net.py"))
    assert code == 2 and "is a folder" in err and not (tmp_path / "net.py").exists()


def test_python_export_refuses_a_code_path_linked_to_its_weights(tiny, tmp_path, capsys):
    (tmp_path / "net.safetensors").write_bytes(b"old")
    os.symlink(tmp_path / "net.safetensors", tmp_path / "net.py")
    code, _, err = run(capsys, "export", str(tiny), "--format", "python", "--out", str(tmp_path / "net.py"))
    assert code == 2 and "is where the weights go" in err and (tmp_path / "net.safetensors").read_bytes() == b"old"


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_export_to_an_unwritable_place_is_one_line(tiny, tmp_path, capsys, where):
    from denoise_studio.core.errors import DenoiseError
    from denoise_studio.core.export import export
    from denoise_studio.core.inference import load_model
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "m.py" if where == "under_a_file" else "/proc/denoise-studio-test/m.py"
    code, _, err = run(capsys, "export", str(tiny), "--format", "python", "--out", str(out))
    assert code == 2 and "choose another --out" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DenoiseError, match="^cannot write .*; choose another --out.$"):   # core says it too
        export(load_model(tiny, "cpu"), "python", out)
    assert (tmp_path / "file").read_text() == "x"


def test_python_export_writes_both_files_and_nothing_else(tiny, tmp_path, capsys):
    code, out, _ = run(capsys, "export", str(tiny), "--format", "python", "--out", str(tmp_path / "net.py"))
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["net.py", "net.safetensors"]
    assert out.split() == ["wrote", str(tmp_path / "net.py"), "wrote", str(tmp_path / "net.safetensors")]
