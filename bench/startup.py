"""Start-up: time from launching the app to its splash, to the window shown, and to the first
training step, each in a fresh process (medians of 3).

    python bench/startup.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from common import ROOT, machine, median, save, table

CHILD = r"""
import os, sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["DENOISE_STUDIO_SETTINGS"] = "/tmp/denoise-startup-settings.ini"
os.environ["DENOISE_STUDIO_RUNS"] = "/tmp/denoise-startup-runs"
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication([])
splash = QLabel("loading"); splash.show(); app.processEvents()
t_splash = time.perf_counter() - t0
from denoise_studio.gui.main_window import MainWindow
w = MainWindow(); w.ask_before_close = False; w.show(); app.processEvents()
t_window = time.perf_counter() - t0
first = []
w.training.session.event.connect(lambda e: first.append(time.perf_counter()) if e.name == "step" else None)
w.training.steps.setValue(1000); w.training.start()
while not first:
    app.processEvents(); time.sleep(0.005)
t_step = first[0] - t0
w.training.shutdown()
print(json.dumps({"splash": t_splash, "window": t_window, "first_step": t_step}))
"""


def main():
    samples = {"splash": [], "window": [], "first_step": []}
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True, text=True,
                             timeout=300, env=os.environ)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        for k in samples:
            samples[k].append(r[k])
    rows = [{"milestone": k.replace("_", " "), "seconds (median of 3)": f"{median(v):.2f}"} for k, v in samples.items()]
    print(table(rows, list(rows[0])))
    print(machine())
    save("startup", {"rows": rows, "samples": samples})


if __name__ == "__main__":
    main()
