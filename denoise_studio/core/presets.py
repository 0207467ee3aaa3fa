"""Presets: architecture specs shipped in resources/presets, loadable by name."""
from __future__ import annotations

from pathlib import Path

from denoise_studio.core.errors import SpecFormatError
from denoise_studio.core.spec import ArchitectureSpec, load_spec_file


def resources_dir() -> Path:
    """resources/ as installed (denoise_studio/resources) or in a source checkout."""
    installed = Path(__file__).resolve().parent.parent / "resources"
    if (installed / "presets").is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "resources"


def presets_dir() -> Path:
    return resources_dir() / "presets"


PRETRAINED = "pretrained"   # the name that means the shipped network wherever a run is accepted


def pretrained_path() -> Path:
    """The trained unet-small shipped in resources/pretrained (see bench/pretrain.py)."""
    return resources_dir() / "pretrained" / "unet-small.safetensors"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.json"))


def load_preset(name: str) -> ArchitectureSpec:
    path = presets_dir() / f"{name}.json"
    if not path.is_file():
        raise SpecFormatError(f"no preset named {name!r}; presets are: {', '.join(preset_names())}.")
    return load_spec_file(path)


def load_spec(spec_or_preset) -> ArchitectureSpec:
    """A path to a spec JSON, or a preset name."""
    s = str(spec_or_preset)
    if s in preset_names() and not Path(s).exists():
        return load_preset(s)
    if not Path(s).exists() and not s.endswith(".json"):
        raise SpecFormatError(f"{s!r} is neither a spec file nor a preset; presets are: "
                              f"{', '.join(preset_names())}.")
    return load_spec_file(s)

