import json
import subprocess
import sys

import pytest

from denoise_studio.cli import main
from denoise_studio.core.network import build_network
from denoise_studio.core.presets import load_preset, preset_names


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_presets_lists_one_a_line_name_first(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == preset_names()
    assert "INVALID" in next(line for line in out.splitlines() if line.startswith("seed-simple "))


def test_inspect_seed_simple_exits_2_explaining_groupnorm(capsys):
    code, out, _ = run_cli(capsys, "inspect", "seed-simple")
    assert code == 2
    assert "GroupNorm(8, 3)" in out and "Fix:" in out


def test_inspect_unet_json_total_params_equal_the_module(capsys):
    code, out, _ = run_cli(capsys, "inspect", "unet", "--size", "256", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["valid"] and d["errors"] == []
    assert d["total_params"] == sum(p.numel() for p in build_network(load_preset("unet")).parameters())
    assert d["blocks"][-1]["output_shape"] == [3, 256, 256]
    assert {"type", "output_shape", "params"} <= set(d["blocks"][0])
    assert d["total_flops"] > 0 and d["receptive_field_global"] is True


def test_inspect_json_errors_carry_block_and_message(capsys):
    code, out, _ = run_cli(capsys, "inspect", "seed-simple", "--json")
    d = json.loads(out)
    assert code == 2 and not d["valid"]
    assert d["errors"][0]["block"] == 5 and "GroupNorm" in d["errors"][0]["message"]


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    ("{oops", "not valid JSON"),
    ('{"format": "x"}', "not an architecture spec"),
    ('{"format": "denoise-studio/architecture", "version": 7}', "newer"),
])
def test_inspect_bad_files_one_line_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "denoise_studio", "inspect", "dncnn", "--size", "40"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "559,363 parameters" in out.stdout
