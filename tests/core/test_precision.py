"""--amp auto follows the CPU's flags: bf16 autocast only where the hardware has native bf16; a run records the path."""
import json


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    from denoise_studio.core import precision
    for flags, amp in ((frozenset({"avx2", "amx_bf16"}), "bf16"), (frozenset({"avx512f", "avx512_bf16"}), "bf16"),
                       (frozenset({"avx2", "avx512f"}), "off"), (frozenset(), "off")):
        monkeypatch.setattr(precision, "cpu_flags", lambda f=flags: f)
        assert precision.auto_amp("cpu") == amp
        assert precision.describe("cpu", amp).startswith("bf16 autocast (CPU has" if amp == "bf16" else "fp32")


def test_a_run_records_its_precision_path(tmp_path, tiny_spec):
    from denoise_studio.core.plan import TrainConfig
    from denoise_studio.core.precision import auto_amp, describe
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.shapes import shapes_imageset
    from denoise_studio.core.trainer import Trainer
    cfg = TrainConfig(steps=1, batch_size=2, crop=16, device="cpu")
    seen = []
    Trainer(tiny_spec, cfg, sinks=[seen.append], run=RunFolder.create(tmp_path / "r", tiny_spec, cfg.to_dict()),
            images=shapes_imageset(4, 2)).run()
    expected = describe("cpu", auto_amp("cpu"))
    assert json.loads((tmp_path / "r" / "config.json").read_text())["precision"] == expected
    assert seen[0].name == "started" and seen[0].precision == expected
