"""The architecture spec: the JSON document a user builds, versioned and stable.

Parsing only checks that a document *is* a spec (right format, known version, a list of
block objects). Everything about whether the network makes sense is validation's job
(`analysis.analyze`), so an invalid network still opens and can be explained and fixed.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from denoise_studio.core.errors import SpecFormatError
from denoise_studio.core.fileio import atomic_write_text

FORMAT = "denoise-studio/architecture"
VERSION = 1
TOP_LEVEL_FIELDS = ("format", "version", "name", "description", "in_channels", "predict", "conditioning",
                    "embedding_dim", "blocks")
CONDITIONING = ("none", "noise_level", "timestep")


@dataclass
class ArchitectureSpec:
    name: str = "untitled"
    description: str = ""
    in_channels: int = 3
    predict: str = "noise"
    conditioning: str = "none"
    embedding_dim: int = 32
    blocks: list[dict] = field(default_factory=list)
    unknown: dict = field(default_factory=dict)  # top-level fields we do not know, kept for messages

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION, "name": self.name}
        if self.description:
            d["description"] = self.description
        d |= {"in_channels": self.in_channels, "predict": self.predict,
              "conditioning": self.conditioning}
        if self.conditioning == "timestep":
            d["embedding_dim"] = self.embedding_dim
        d["blocks"] = copy.deepcopy(self.blocks)
        d.update(copy.deepcopy(self.unknown))
        return d

    def to_json(self) -> str:
        blocks = ",\n".join("    " + json.dumps(b) for b in self.blocks)
        d = self.to_dict()
        d["blocks"] = "@@BLOCKS@@"
        text = json.dumps(d, indent=2)
        return text.replace('"@@BLOCKS@@"', "[\n" + blocks + "\n  ]" if blocks else "[]") + "\n"

    def copy(self) -> ArchitectureSpec:
        return spec_from_dict(self.to_dict())

    def save(self, path) -> None:
        atomic_write_text(Path(path), self.to_json())


def spec_from_dict(d, source: str = "spec") -> ArchitectureSpec:
    if not isinstance(d, dict):
        raise SpecFormatError(f"{source} is not an architecture spec: expected a JSON object.")
    fmt = d.get("format")
    if fmt != FORMAT:
        raise SpecFormatError(f'{source} is not an architecture spec: "format" must be "{FORMAT}" '
                              f"(found {fmt!r}).")
    version = d.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SpecFormatError(f'{source}: "version" must be a positive integer (found {version!r}).')
    if version > VERSION:
        raise SpecFormatError(f"{source} is spec version {version}, newer than this Denoise Studio "
                              f"understands ({VERSION}); upgrade Denoise Studio to open it.")
    blocks = d.get("blocks", [])
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SpecFormatError(f'{source}: "blocks" must be a list of objects.')
    return ArchitectureSpec(
        name=str(d.get("name", "untitled")),
        description=str(d.get("description", "")),
        in_channels=d.get("in_channels", 3),
        predict=d.get("predict", "noise"),
        conditioning=d.get("conditioning", "none"),
        embedding_dim=d.get("embedding_dim", 32),
        blocks=copy.deepcopy(blocks),
        unknown={k: v for k, v in d.items() if k not in TOP_LEVEL_FIELDS},
    )


def spec_from_json(text: str, source: str = "spec") -> ArchitectureSpec:
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise SpecFormatError(f"{source} is not valid JSON ({e}); an architecture spec is a "
                              f"JSON file made by Denoise Studio or `denoise-studio presets`.") from None
    return spec_from_dict(d, source)


def load_spec_file(path) -> ArchitectureSpec:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecFormatError(f"{path}: no such file; give a spec file or a preset name "
                              f"(see `denoise-studio presets`).") from None
    except OSError as e:
        raise SpecFormatError(f"{path}: cannot read it ({e.strerror}).") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecFormatError(f"{path} is not an architecture spec: it is not UTF-8 text.") from None
    return spec_from_json(text, str(path))


def apply_patch(spec: ArchitectureSpec, patch: dict) -> ArchitectureSpec:
    """Apply a fix offered by validation and return a new spec.

    Patches: {"block": i, "set": {...}} (None removes a field), {"block": i, "insert": {...}}
    (insert before block i), {"block": i, "remove": True}, {"set_top": {...}}.
    """
    new = spec.copy()
    if "set_top" in patch:
        for k, v in patch["set_top"].items():
            setattr(new, k, v)
        return new
    i = patch["block"]
    if "insert" in patch:
        new.blocks.insert(i, copy.deepcopy(patch["insert"]))
    elif patch.get("remove"):
        del new.blocks[i]
    else:
        for k, v in patch["set"].items():
            if v is None:
                new.blocks[i].pop(k, None)
            else:
                new.blocks[i][k] = v
    return new
