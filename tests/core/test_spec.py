import json

import pytest

from denoise_studio.core.errors import SpecFormatError
from denoise_studio.core.presets import load_preset, load_spec, preset_names
from denoise_studio.core.spec import (
    VERSION,
    ArchitectureSpec,
    apply_patch,
    load_spec_file,
    spec_from_dict,
    spec_from_json,
)


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip_through_json(name, tmp_path):
    spec = load_preset(name)
    path = tmp_path / "s.json"
    spec.save(path)
    again = load_spec_file(path)
    assert again.to_dict() == spec.to_dict()
    assert json.loads(path.read_text())["format"] == "denoise-studio/architecture"


def test_all_required_presets_exist():
    assert {"seed-simple", "seed-simple-fixed", "residual", "dncnn", "unet"} <= set(preset_names())


@pytest.mark.parametrize("text, words", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"format": "other", "version": 1}', '"format" must be'),
    ('{"format": "denoise-studio/architecture", "version": 99}', "newer than this"),
    ('{"format": "denoise-studio/architecture", "version": "1"}', "positive integer"),
    ('{"format": "denoise-studio/architecture", "version": 1, "blocks": {}}', "list of objects"),
])
def test_not_a_spec_is_one_clear_error(text, words):
    with pytest.raises(SpecFormatError, match=words):
        spec_from_json(text, "x.json")


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(SpecFormatError, match="no such file"):
        load_spec_file(tmp_path / "nope.json")
    with pytest.raises(SpecFormatError, match="neither a spec file nor a preset"):
        load_spec("no-such-preset")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecFormatError, match="not UTF-8"):
        load_spec(tmp_path / "bin.json")


def test_unknown_fields_are_kept_for_messages():
    spec = spec_from_dict({"format": "denoise-studio/architecture", "version": VERSION, "colour": "red"})
    assert spec.unknown == {"colour": "red"}
    assert spec.to_dict()["colour"] == "red"


def test_apply_patch_does_not_mutate_the_original():
    spec = ArchitectureSpec(blocks=[{"type": "conv", "out_channels": 8}])
    new = apply_patch(spec, {"block": 0, "set": {"out_channels": 3, "norm": "none"}})
    assert spec.blocks[0] == {"type": "conv", "out_channels": 8}
    assert new.blocks[0] == {"type": "conv", "out_channels": 3, "norm": "none"}
    new = apply_patch(new, {"block": 1, "insert": {"type": "residual"}})
    assert [b["type"] for b in new.blocks] == ["conv", "residual"]
    assert apply_patch(new, {"block": 0, "remove": True}).blocks == [{"type": "residual"}]
    assert apply_patch(new, {"block": 0, "set": {"norm": None}}).blocks[0] == {"type": "conv", "out_channels": 3}
