"""Regenerate the README's screenshot from the real app, offscreen: the recommended preset
training on CPU (the shot is taken while it trains, after
the first checkpoint at or past --steps), then a held-out scikit-image photo (chelsea, never trained
on) denoised at σ = 25 by the network as it stands.

    python bench/screenshot.py [--steps 100] [--out resources/screenshot.png]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import ROOT  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "resources" / "screenshot.png"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="denoise-shot-"))
    os.environ["DENOISE_STUDIO_SETTINGS"] = str(tmp / "settings.ini")
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    import skimage.data

    from denoise_studio.gui.main_window import DEFAULT_PRESET, MainWindow
    w = MainWindow()
    w.ask_before_close = False
    w.training.runs_dir = tmp / "runs"
    w.resize(1500, 950)
    w.show()
    w.open_preset(DEFAULT_PRESET)
    w.training.start()
    checkpoints = []
    w.training.session.event.connect(lambda e: checkpoints.append(e.step) if e.name == "checkpoint" else None)
    t0 = time.time()      # train (live, as a user sees it) until a checkpoint at or after --steps
    while not (checkpoints and checkpoints[-1] >= args.steps) and w.training.session.running \
            and time.time() - t0 < 1800:
        app.processEvents()
        time.sleep(0.01)
    w.image_pane.open_path(Path(skimage.data.__file__).parent / "chelsea.png")
    t0 = time.time()
    while w.image_pane.busy and time.time() - t0 < 300:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(100):      # let the plots take the last events and repaint
        app.processEvents()
        time.sleep(0.01)
    w.grab().save(args.out)
    print(f"{args.out}: {w.training.status.text()}")
    w.training.shutdown()
    w.close()


if __name__ == "__main__":
    main()
