"""Start-up: time from launching the app to its window shown (the model builder usable, PyTorch
not yet imported), to PyTorch ready in the background (the builder's shapes and counts filled in,
the training panel there), and to the first training step (Start pressed as soon as the training
panel is there), each in a fresh process as the app does it (medians of 3). Then the time from
pressing Start to the first step on a window that has been open a few seconds, with and without
the warm spare training child the app keeps (alternating, medians of 3).

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
mode = sys.argv[2]                   # launch | cold | warm
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["DENOISE_STUDIO_SETTINGS"] = "/tmp/denoise-startup-settings.ini"
os.environ["DENOISE_STUDIO_RUNS"] = "/tmp/denoise-startup-runs"
from PySide6.QtWidgets import QApplication
app = QApplication([])
from denoise_studio.gui import heavy
from denoise_studio.gui.main_window import MainWindow
heavy.defer()                        # as the app does (gui/app.py)
w = MainWindow(); w.ask_before_close = False; w.show(); app.processEvents()
t_window = time.perf_counter() - t0
assert "torch" not in sys.modules and w.builder.stack.item(0).data(257)["shape"] == "…"
heavy.start()
ready = []
heavy.when_ready(lambda: ready.append(time.perf_counter()))   # after the builder and panels are filled in
while not ready:
    app.processEvents(); time.sleep(0.005)
t_ready = ready[0] - t0
assert w.builder.stack.item(0).data(257)["shape"] != "…" and w.training.start_button.isEnabled()
if mode != "cold":
    w.training.prewarm()     # as the app does once torch is ready
if mode != "launch":                 # the user looks at the window for a while before pressing Start
    t_end = time.perf_counter() + 8
    while time.perf_counter() < t_end:
        app.processEvents(); time.sleep(0.01)
first = []
w.training.session.event.connect(lambda e: first.append(time.perf_counter()) if e.name == "step" else None)
w.training.steps.setValue(1000)
t_start = time.perf_counter()
w.training.start()
while not first:
    app.processEvents(); time.sleep(0.005)
t_step = first[0] - t0
w.training.shutdown()
print(json.dumps({"window": t_window, "ready": t_ready, "first_step": t_step, "start_to_step": first[0] - t_start}))
"""


def launch(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), mode], capture_output=True, text=True,
                         timeout=300, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    samples = {"window": [], "ready": [], "first_step": [], "start_cold": [], "start_warm": []}
    for _ in range(3):
        r = launch("launch")
        for k in ("window", "ready", "first_step"):
            samples[k].append(r[k])
        samples["start_cold"].append(launch("cold")["start_to_step"])
        samples["start_warm"].append(launch("warm")["start_to_step"])
    names = {"window": "launch → window shown (builder usable, PyTorch loading)",
             "ready": "launch → PyTorch ready (builder shapes and counts, training panel)",
             "first_step": "launch → first training step (Start pressed as the training panel shows)",
             "start_cold": "Start → first step, window open 8 s, no spare child",
             "start_warm": "Start → first step, window open 8 s, warm spare child (the app's default)"}
    rows = [{"milestone": names[k], "seconds (median of 3)": f"{median(v):.2f}"} for k, v in samples.items()]
    print(table(rows, list(rows[0])))
    print(f"warm spare: {median(samples['start_cold']) / median(samples['start_warm']):.1f}× faster to the first step")
    print(machine())
    save("startup", {"rows": rows, "samples": samples})


if __name__ == "__main__":
    main()
