import os
import tempfile

import pytest
import torch
from hypothesis import settings as _hypothesis_settings

# GUI tests never need a display; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_scratch = tempfile.mkdtemp(prefix="denoise-studio-tests-")
os.environ["DENOISE_STUDIO_SETTINGS"] = os.path.join(_scratch, "settings.ini")  # never the user's settings
os.environ["DENOISE_STUDIO_RUNS"] = os.path.join(_scratch, "runs")

torch.set_num_threads(1)


@pytest.fixture
def tiny_spec():
    from denoise_studio.core.spec import ArchitectureSpec
    return ArchitectureSpec(name="tiny", blocks=[
        {"type": "conv", "out_channels": 8, "norm": "group:4", "act": "silu"},
        {"type": "residual", "norm": "group:4", "act": "silu"},
        {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"},
    ])

# CI replays the same examples every run (a landing must not depend on a lucky draw);
# locally hypothesis explores new ones.
_hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")
