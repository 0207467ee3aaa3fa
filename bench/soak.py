"""Soak: the GUI trains for a long time with previews on; memory of both processes must stay
flat (RSS slope, MB/min, from a least-squares fit after warm-up) and the event loop responsive.

    python bench/soak.py --minutes 30
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from common import LatenessProbe, machine, save, table  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--preset", default="unet-small")
    args = ap.parse_args()
    os.environ["DENOISE_STUDIO_SETTINGS"] = "/tmp/denoise-soak-settings.ini"
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from denoise_studio.gui.main_window import MainWindow
    w = MainWindow()
    w.ask_before_close = False
    w.training.runs_dir = __import__("pathlib").Path("/tmp/denoise-soak-runs")
    w.open_preset(args.preset)
    w.training.steps.setValue(10_000_000)
    w.training.batch.setValue(8)
    w.show()
    w.training.start()
    steps = [0]
    w.training.session.event.connect(lambda e: steps.__setitem__(0, e.step) if e.name == "step" else None)
    probe = LatenessProbe()
    samples = []
    t0 = time.time()
    next_sample = t0
    while time.time() - t0 < args.minutes * 60 and w.training.session.running:
        app.processEvents()
        time.sleep(0.002)
        if time.time() >= next_sample:
            samples.append((time.time() - t0, rss_mb(os.getpid()), rss_mb(w.training.session.process.pid), steps[0]))
            next_sample += 10
    w.training.stop()
    while w.training.session.running:
        app.processEvents()
        time.sleep(0.01)
    a = np.array(samples)
    warm = a[a[:, 0] > min(120, a[-1, 0] / 4)]
    slope = lambda col: np.polyfit(warm[:, 0] / 60, warm[:, col], 1)[0]  # noqa: E731
    rows = [{"process": "GUI", "RSS start MB": f"{warm[0, 1]:.0f}", "RSS end MB": f"{warm[-1, 1]:.0f}",
             "slope MB/min": f"{slope(1):+.2f}"},
            {"process": "training child", "RSS start MB": f"{warm[0, 2]:.0f}", "RSS end MB": f"{warm[-1, 2]:.0f}",
             "slope MB/min": f"{slope(2):+.2f}"}]
    print(f"{args.minutes:g} min, {int(a[-1, 3])} steps, previews every {w.training.config().preview_every} steps")
    print(table(rows, list(rows[0])))
    lat = np.array(probe.stop()[100:])
    print(f"event-loop lateness over the soak: p50 {np.percentile(lat, 50):.1f} ms, "
          f"p99 {np.percentile(lat, 99):.1f} ms, "
          f"max {lat.max():.1f} ms")
    print(machine())
    save("soak", {"minutes": args.minutes, "rows": rows, "samples": samples,
                  "lateness_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                  "max": float(lat.max())}})
    w.close()


if __name__ == "__main__":
    main()
