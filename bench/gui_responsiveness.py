"""GUI responsiveness: lateness of a 10 ms QTimer (p50/p99/max) with the window idle and while
it trains on CPU in its child process; training throughput from the GUI against the same run
headless (same threads), in the same run of this script.

    python bench/gui_responsiveness.py [--seconds 40] [--preset unet-small]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from common import LatenessProbe, machine, median, save, table  # noqa: E402


def lateness(app, seconds: float) -> list[float]:
    probe = LatenessProbe()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)
    return probe.stop()


def stats(xs) -> dict:
    a = np.array(xs)
    return {"p50 ms": f"{np.percentile(a, 50):.1f}", "p99 ms": f"{np.percentile(a, 99):.1f}",
            "max ms": f"{a.max():.1f}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--preset", default="unet-small")
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    os.environ["DENOISE_STUDIO_SETTINGS"] = "/tmp/denoise-bench-settings.ini"
    from denoise_studio.core.data import ImageSet
    from denoise_studio.core.presets import load_preset
    from denoise_studio.core.trainer import TrainConfig, Trainer
    from denoise_studio.gui.main_window import MainWindow
    w = MainWindow()
    w.ask_before_close = False
    w.training.runs_dir = __import__("pathlib").Path("/tmp/denoise-bench-runs")
    w.open_preset(args.preset)
    w.show()
    idle = lateness(app, 10)
    rates = []
    w.training.session.event.connect(lambda e: rates.append(e.images_per_s) if e.name == "step" else None)
    w.training.steps.setValue(100000)
    w.training.start()
    while not rates:
        app.processEvents()
        time.sleep(0.01)
    busy = lateness(app, args.seconds)
    w.training.stop()
    while w.training.session.running:
        app.processEvents()
        time.sleep(0.01)
    gui_rate = median(rates[5:])
    threads = max(1, (os.cpu_count() or 2) - 1)
    cfg = w.training.config()
    head = []
    headless_cfg = TrainConfig(**{**cfg.to_dict(), "steps": len(rates), "threads": threads, "sigma": tuple(cfg.sigma),
                                  "eval_every": cfg.eval_every, "preview_every": cfg.preview_every})
    Trainer(load_preset(args.preset), headless_cfg, sinks=[lambda e: head.append(e.images_per_s)
                                                             if e.name == "step" else None],
            images=ImageSet.load("builtin")).run()
    head_rate = median(head[5:])
    rows = [{"state": "idle window", **stats(idle)}, {"state": f"training {args.preset} on CPU", **stats(busy)}]
    print(table(rows, ["state", "p50 ms", "p99 ms", "max ms"]))
    thr = [{"where": f"GUI (child process, {threads} thread)", "img/s": f"{gui_rate:.1f}",
            "ratio": f"{gui_rate / head_rate:.2f}×"},
           {"where": f"headless, same settings, {threads} thread", "img/s": f"{head_rate:.1f}", "ratio": "1.00×"}]
    print(table(thr, ["where", "img/s", "ratio"]))
    print(machine())
    save("gui_responsiveness", {"lateness": rows, "throughput": thr, "seconds": args.seconds})
    w.close()


if __name__ == "__main__":
    main()
