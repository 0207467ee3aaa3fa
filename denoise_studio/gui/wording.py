"""Core messages in the app's words.

core speaks to both front ends, and its advice names command-line flags ("use --noise gaussian").
In the window those flags are settings of the training panel, so before the app shows a core
message it rewrites each flag it has a setting for into that setting's name and value, as the panel
labels it: `--noise gaussian` → `noise "gaussian"`, `--sigma 25` → `σ 25`, `a larger --crop` → `a
larger crop`. A flag the window has no setting for is left as it is.
"""
from __future__ import annotations

import re

# flag → the training panel's label for it (training_view.py's form rows)
SETTINGS = {"noise": "noise", "objective": "objective", "crop": "crop", "device": "device", "sigma": "σ",
            "lr": "learning rate", "batch-size": "batch size", "steps": "steps", "seed": "seed"}

_FLAG = re.compile(r"--([a-z][a-z-]*)(?: ([A-Za-z0-9_:]+(?:[.-][A-Za-z0-9_]+)*))?")


def _setting(m: re.Match) -> str:
    flag, value = m.group(1), m.group(2)
    label = SETTINGS.get(flag)
    if label is None:
        return m.group(0)
    if value is None:
        return label
    number = re.fullmatch(r"[0-9][0-9.e-]*", value) is not None
    return f"{label} {value}" if number else f'{label} "{value}"'


def app_words(message: str) -> str:
    return _FLAG.sub(_setting, message)
