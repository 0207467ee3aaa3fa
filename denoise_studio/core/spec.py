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
from denoise_studio.core.fileio import atomic_write_text, read_regular
from denoise_studio.core.limits import cap, check_cap

FORMAT = "denoise-studio/architecture"
VERSION = 1
TOP_LEVEL_FIELDS = ("format", "version", "name", "description", "in_channels", "predict", "conditioning",
                    "embedding_dim", "blocks")
CONDITIONING = ("none", "noise_level", "timestep")
TEXT_FIELDS = ("name", "description")
MAX_DEPTH = 16   # a spec nests 3 deep; deeper is not a spec, and would overflow the stack when copied


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
    # name/description that were not strings in the document: shown as validation problems, while
    # the fields themselves hold a string (a title bar or file name can always use them)
    not_text: dict = field(default_factory=dict)

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
        """Indented JSON with one block per line, so a spec reads (and diffs) block by block."""
        items = []
        for key, value in self.to_dict().items():
            if key == "blocks" and value:
                text = "[\n" + ",\n".join("    " + json.dumps(b) for b in value) + "\n  ]"
            else:
                text = json.dumps(value, indent=2).replace("\n", "\n  ")
            items.append(f"  {json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(items) + "\n}\n"

    def copy(self) -> ArchitectureSpec:
        new = spec_from_dict(self.to_dict())
        new.not_text = dict(self.not_text)
        return new

    def save(self, path) -> None:
        atomic_write_text(Path(path), self.to_json())


def _check_depth(d, source: str) -> None:
    """Refuse absurdly nested documents up front (iteratively: recursion is what they attack)."""
    stack = [(d, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecFormatError(f"{source} is not an architecture spec: it nests lists or objects more than "
                                  f"{MAX_DEPTH} deep (a spec nests 3).")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((c, depth + 1) for c in children)


def spec_from_dict(d, source: str = "spec") -> ArchitectureSpec:
    """Check that `d` is a spec document (format, version, a list of block objects, sane size and
    depth) and wrap it; every field's value is validation's job (`analysis.analyze`)."""
    if not isinstance(d, dict):
        raise SpecFormatError(f"{source} is not an architecture spec: expected a JSON object.")
    fmt = d.get("format")
    if fmt != FORMAT:
        raise SpecFormatError(f'{source} is not an architecture spec: "format" must be "{FORMAT}" '
                              f"(found {_short(fmt)}).")
    version = d.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SpecFormatError(f'{source}: "version" must be a positive integer (found {_short(version)}).')
    if version > VERSION:
        raise SpecFormatError(f"{source} is spec version {_short(version)}, newer than this Denoise Studio "
                              f"understands ({VERSION}); upgrade Denoise Studio to open it.")
    blocks = d.get("blocks", [])
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SpecFormatError(f'{source}: "blocks" must be a list of objects.')
    check_cap("BLOCKS", len(blocks), f"{source}: the number of blocks")
    _check_depth(d, source)
    text = {k: d.get(k, default) for k, default in (("name", "untitled"), ("description", ""))}
    return ArchitectureSpec(
        **{k: v if isinstance(v, str) else json.dumps(v)[:40] for k, v in text.items()},
        in_channels=d.get("in_channels", 3),
        predict=d.get("predict", "noise"),
        conditioning=d.get("conditioning", "none"),
        embedding_dim=d.get("embedding_dim", 32),
        blocks=copy.deepcopy(blocks),
        unknown={k: copy.deepcopy(v) for k, v in d.items() if k not in TOP_LEVEL_FIELDS},
        not_text={k: v for k, v in text.items() if not isinstance(v, str)},
    )


def _short(value) -> str:
    # blocks imports torch (through modules): only import it when there is an error to show
    from denoise_studio.core.blocks import show
    return show(value)


def spec_from_json(text: str, source: str = "spec") -> ArchitectureSpec:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecFormatError(f"{source} is not valid JSON ({e}); an architecture spec is a "
                              f"JSON file made by Denoise Studio or `denoise-studio presets`.") from None
    except RecursionError:
        raise SpecFormatError(f"{source} is not an architecture spec: it nests lists or objects thousands "
                              "deep.") from None
    except ValueError:   # an integer of more digits than Python converts (sys.int_info.str_digits_check_threshold)
        raise SpecFormatError(f"{source} is not an architecture spec: it holds a number thousands of digits "
                              "long.") from None
    return spec_from_dict(d, source)


def load_spec_file(path) -> ArchitectureSpec:
    path = Path(path)
    if not path.exists():
        raise SpecFormatError(f"{path}: no such file; give a spec file or a preset name "
                              f"(see `denoise-studio presets`).")
    data = read_regular(path, "spec file", cap("SPEC_BYTES"), SpecFormatError)
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
            new.not_text.pop(k, None)
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
