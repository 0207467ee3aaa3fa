"""Core's advice names command-line flags; the window shows them as its own settings."""
import pytest

from denoise_studio.core.plan import TrainConfig
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.gui.wording import app_words
from tests.imagegen import TINY_SPEC


@pytest.mark.parametrize("text, shown", [
    ("use --noise gaussian (or another image noise) with it, or --objective supervised for ddpm.",
     'use noise "gaussian" (or another image noise) with it, or objective "supervised" for ddpm.'),
    ("use a larger --crop.", "use a larger crop."),
    ("use --device cpu.", 'use device "cpu".'),
    ("add synthetic noise with --noise gaussian --sigma 25, or train with --objective supervised.",
     'add synthetic noise with noise "gaussian" σ 25, or train with objective "supervised".'),
    ("lower --lr 2e-3 or --batch-size 4.", "lower learning rate 2e-3 or batch size 4."),
    ("pass --resume to continue it", "pass --resume to continue it"),   # no such setting in the window: as is
])
def test_flags_become_the_panels_settings(text, shown):
    assert app_words(text) == shown


def test_every_settings_problem_core_gives_reads_without_flags_the_app_has():
    spec = spec_from_dict(TINY_SPEC)
    problems = [p for objective in ("n2v", "ne2ne") for noise in ("ddpm", "correlated")
                for p in TrainConfig(objective=objective, noise=noise, synthetic_noise=True, crop=3).problems(spec)]
    assert len(problems) >= 4
    for p in map(app_words, problems):
        assert "--" not in p, p


def test_the_training_panel_shows_core_advice_in_its_own_words(view):
    view.objective.setCurrentIndex(view.objective.findData("n2v"))
    view.noise.setCurrentText("ddpm")
    assert view.message.text().startswith("Settings: n2v learns to denoise images")
    assert 'use noise "gaussian"' in view.message.text() and "--" not in view.message.text()
    assert not view.start()
    assert "--" not in view.message.text() and 'objective "supervised"' in view.message.text()
