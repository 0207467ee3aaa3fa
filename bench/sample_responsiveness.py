"""The window while it samples: lateness of a 10 ms QTimer (p50/p99/max) with the Sample tab
running the reverse process in its worker thread, against the idle window in the same run.

    python bench/sample_responsiveness.py RUN [--seconds 20] [--n 16]

RUN: a run folder of a DDPM-trained, timestep-conditioned network (e.g. the one
bench/sampling.py trains, bench/results/runs/sampling-4000steps).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import LatenessProbe, machine, save, table  # noqa: E402
from gui_responsiveness import lateness, stats  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    os.environ["DENOISE_STUDIO_SETTINGS"] = "/tmp/denoise-bench-settings.ini"
    from denoise_studio.gui.main_window import MainWindow
    w = MainWindow()
    w.ask_before_close = False
    w.resize(1500, 950)
    w.show()
    assert w.training.open_run(args.run), "not a run folder"
    view = w.sample_view
    idle = lateness(app, 5)
    view.sampler.setCurrentIndex(view.sampler.findData("ddpm"))   # every step: the longest run
    view.n.setValue(args.n)
    view.start()
    probe = LatenessProbe()
    t0 = time.perf_counter()
    while view.running and time.perf_counter() - t0 < args.seconds:
        app.processEvents()
        time.sleep(0.001)
    busy = probe.stop()
    steps = view.frames[-1][0] if view.frames else 0
    view.cancel()
    while view.running:
        app.processEvents()
        time.sleep(0.01)
    rows = [{"state": "idle window", **stats(idle)},
            {"state": f"sampling {args.n} images, DDPM ({steps} steps in {time.perf_counter() - t0:.0f} s)",
             **stats(busy)}]
    print(table(rows, ["state", "p50 ms", "p99 ms", "max ms"]))
    print(machine())
    save("sample_responsiveness", {"rows": rows, "seconds": args.seconds, "n": args.n})
    w.close()


if __name__ == "__main__":
    main()
