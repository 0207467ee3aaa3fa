"""Live training from the window, in a child process: start, plot, preview, pause, stop,
a killed child, reopening a run."""
import json
import os
import signal
import time

from PySide6.QtCore import Qt

from tests.gui.conftest import CHILD_TIMEOUT_MS
from tests.imagegen import TINY_SPEC, write_folder


def steps_seen(v):
    return v.loss_plot.raw.n


def test_start_trains_plots_and_previews(view, window, qtbot):
    view.steps.setValue(40)
    ended = []
    view.session.ended.connect(ended.append)
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert not view.start_button.isEnabled() and view.stop_button.isEnabled()
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished", getattr(ended[0], "message", "")
    view.loss_plot.redraw()
    assert steps_seen(view) == 40
    x, y = view.loss_plot.raw_curve.getData()
    assert len(x) > 0 and x[-1] == 40
    assert view.loss_plot.psnr.n >= 1
    assert view.grad_strip.matrix().shape[0] == 3          # one row per block
    assert window.image_pane.images["reconstruction"].shape[:2] == window.image_pane.images["noisy"].shape[:2]
    assert "error" in window.image_pane.images             # clean known: error pane filled
    assert view.progress.value() == 100 and "Finished at step 40" in view.status.text()
    assert (view.current_run / "checkpoints" / "last.safetensors").is_file()
    assert view.start_button.isEnabled()


def test_pause_resume_and_stop(view, qtbot):
    view.steps.setValue(100000)
    ended = []
    view.session.ended.connect(ended.append)
    assert view.start()
    qtbot.waitUntil(lambda: steps_seen(view) >= 3, timeout=CHILD_TIMEOUT_MS)
    view.toggle_pause()
    assert view.pause_button.text() == "Continue"
    qtbot.wait(600)                       # let in-flight steps land
    paused_at = steps_seen(view)
    qtbot.wait(1000)
    assert steps_seen(view) - paused_at <= 1
    view.toggle_pause()
    qtbot.waitUntil(lambda: steps_seen(view) > paused_at + 2, timeout=30_000)
    view.stop()
    qtbot.waitUntil(lambda: bool(ended), timeout=60_000)
    assert ended[0].name == "finished" and ended[0].reason == "stopped"


def test_a_killed_training_process_is_reported_and_the_window_stays_usable(view, qtbot):
    view.steps.setValue(100000)
    ended = []
    view.session.ended.connect(ended.append)
    assert view.start()
    qtbot.waitUntil(lambda: steps_seen(view) >= 2, timeout=CHILD_TIMEOUT_MS)
    os.kill(view.session.process.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: bool(ended), timeout=30_000)
    assert ended[0].name == "failed"
    assert "ended unexpectedly" in view.message.text() and "killed" in view.message.text()
    assert view.start_button.isEnabled() and not view.stop_button.isEnabled()
    # change settings and start again
    view.steps.setValue(5)
    ended.clear()
    assert view.start()
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished"


def test_a_warm_spare_child_runs_the_next_start_and_is_replaced(view, qtbot):
    session = view.session
    session.prewarm()
    qtbot.waitUntil(lambda: session.spare is not None and session.spare.ready.is_set(), timeout=CHILD_TIMEOUT_MS)
    spare = session.spare.process
    view.steps.setValue(5)
    ended = []
    session.ended.connect(ended.append)
    assert view.start()
    assert session.process is spare and session.spare is None      # the run went to the warm child
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished" and steps_seen(view) == 5
    assert session.spare is not None and session.spare.process.pid != spare.pid   # a fresh spare for the next run
    os.kill(session.spare.process.pid, signal.SIGKILL)                      # a spare that died while idle …
    qtbot.waitUntil(lambda: not session.spare.process.is_alive(), timeout=10_000)
    ended.clear()
    assert view.start()                                                # … is replaced by a cold start
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished"
    last_spare = session.spare.process
    view.shutdown()
    assert session.spare is None and not last_spare.is_alive()


def test_start_right_after_prewarm_goes_to_the_child_still_warming_up(view, qtbot):
    session = view.session
    session.prewarm()
    spare = session.spare.process
    view.steps.setValue(3)
    ended = []
    session.ended.connect(ended.append)
    assert view.start() and session.process is spare
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished", getattr(ended[0], "message", "")


def test_invalid_network_is_refused_with_the_reason(view, window):
    from denoise_studio.core.presets import load_preset
    window.doc.load(load_preset("seed-simple"))
    assert not view.start()
    assert "GroupNorm(8, 3)" in view.message.text()


def test_reopening_a_run_restores_its_curve_and_resume_continues(view, window, qtbot, tmp_path):
    view.steps.setValue(20)
    ended = []
    view.session.ended.connect(ended.append)
    assert view.start()
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    run = view.current_run
    view.loss_plot.clear()
    assert view.open_run(run)
    assert steps_seen(view) == 20 and view.loss_plot.psnr.n >= 1
    assert "noisy" in window.image_pane.images      # last preview shown again
    assert view.compare_run(run) and len(view.loss_plot.compare) == 1
    view.steps.setValue(30)
    ended.clear()
    assert view.resume()
    qtbot.waitUntil(lambda: bool(ended), timeout=CHILD_TIMEOUT_MS)
    assert ended[0].name == "finished" and ended[0].step == 30
    lines = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert [x["resumed_from"] for x in lines if x["event"] == "started"] == [None, 20]


def test_device_selector_lists_cpu_and_explains_unavailable_devices(view):
    sel = view.device_selector
    labels = [sel.itemText(i) for i in range(sel.count())]
    assert labels[0].startswith("auto") and any(t.startswith("cpu:") for t in labels)
    for i in range(sel.count()):
        item = sel.model().item(i)
        if not item.isEnabled():
            assert "unavailable (" in sel.itemText(i) and item.toolTip()


def test_loss_plot_stays_correct_with_many_points(qapp):
    import numpy as np

    from denoise_studio.gui.loss_plot import LossPlot
    plot = LossPlot()
    steps = np.arange(1, 100_001)
    t = time.perf_counter()
    plot.add_losses(steps, 1.0 / np.sqrt(steps))
    plot.redraw()
    assert plot.raw.n == 100_000 and plot.ema.n == 100_000
    assert plot.ema.y[99_999] < plot.ema.y[100]
    assert plot._best[0] == 100_000     # best-so-far marker at the lowest smoothed loss
    assert time.perf_counter() - t < 60  # sanity only; speed is measured in bench/


def test_the_gui_follows_a_run_written_by_another_process(view, window, qtbot, tmp_path):
    """A headless `denoise-studio train` (or torchrun job) writes; the window watches it live."""
    import subprocess
    import sys
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    data = write_folder(tmp_path / "d", n=5, size=40)
    run = tmp_path / "headless"
    proc = subprocess.Popen([sys.executable, "-m", "denoise_studio", "train", str(spec), "--data", str(data),
                             "--out", str(run), "--steps", "150", "--batch-size", "4", "--crop", "16",
                             "--device", "cpu", "--eval-every", "50", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        qtbot.waitUntil(lambda: (run / "events.jsonl").is_file(), timeout=CHILD_TIMEOUT_MS)
        assert view.open_run(run)
        qtbot.waitUntil(lambda: view.followed is None, timeout=CHILD_TIMEOUT_MS)   # followed to the end
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert steps_seen(view) == 150
    assert view.loss_plot.psnr.n == 3
    assert "finished" in view.status.text()
    assert "noisy" in window.image_pane.images


def test_envelope_keeps_every_peak_and_bounds_the_points():
    import numpy as np

    from denoise_studio.gui.loss_plot import envelope
    x = np.arange(1_000_000, dtype=float)
    y = np.random.default_rng(1).random(1_000_000)
    y[123_457] = 50.0                       # a spike must survive decimation
    ex, ey = envelope(x, y, -np.inf, np.inf, buckets=1000)
    assert len(ex) <= 2 * 1000 + 1000 and ey.max() == 50.0 and ey.min() == y.min()
    zx, zy = envelope(x, y, 1000, 1100, buckets=1000)   # zoomed in: the raw points
    assert len(zx) <= 103 and np.array_equal(zy, y[int(zx[0]):int(zx[-1]) + 1])


def test_whole_series_envelope_is_kept_up_to_date_as_points_arrive():
    import numpy as np

    from denoise_studio.gui.loss_plot import Series
    y = np.random.default_rng(2).random(50_000)
    y[31_337] = 9.0
    live = Series()
    for i, v in enumerate(y):
        live.append(i, v)
        if i in (999, 4_096, 20_000, 31_336, 31_337, 49_999):
            lx, ly = live.envelope(columns=500)       # redraws while the series grows
            assert len(lx) <= 2 * 2 * 500
            seen = y[:i + 1]
            assert ly.max() == seen.max() and ly.min() == seen.min()
            # every point of the envelope is a real point, in step order
            assert np.all(np.diff(lx) >= 0) and np.all(np.isin(ly, seen))
    fresh = Series()
    for i, v in enumerate(y):
        fresh.append(i, v)
    for a, b in zip(live.envelope(columns=500), fresh.envelope(columns=500), strict=True):
        assert np.array_equal(a, b)                   # incremental == computed from scratch
    # 50,000 points in 500 columns: buckets of 128 (a power of two), each keeping its min and max
    k = 128
    _, ly = fresh.envelope(columns=500)
    blocks = y[:50_000 // k * k].reshape(-1, k)
    assert np.array_equal(ly[:2 * len(blocks):2], blocks.min(1))
    assert np.array_equal(ly[1:2 * len(blocks):2], blocks.max(1))


def test_log_axis_labels_only_1_2_5_per_decade(qapp):
    import numpy as np

    from denoise_studio.gui.loss_plot import LossAxis
    axis = LossAxis("left")
    values = np.log10([0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.02])
    labels = axis.logTickStrings(list(values), 1.0, 1.0)
    assert [bool(s) for s in labels] == [True, True, False, True, False, True, True]


def test_the_legend_shows_only_where_it_fits(qapp):
    from denoise_studio.gui.loss_plot import LossPlot
    plot = LossPlot()
    for width, visible in ((900, True), (330, False)):
        plot.resize(width, 300)
        plot.show()
        qapp.processEvents()
        assert plot.plot.getPlotItem().legend.isVisible() is visible


def test_a_recovered_loss_spike_is_shown_and_a_followed_run_ignores_it(view):
    from denoise_studio.core.events import RecoveredEvent
    ev = RecoveredEvent(step=44, time=0.0, loss=8.5, restored_step=30, lr_scale=0.5,
                        message="the loss jumped to 8.5 at step 45; went back to step 30's weights.")
    view._dispatch(ev, False)   # reading an old run back: not news
    assert "loss spike" not in view.message.text()
    view.on_event(ev)
    assert view.message.text() == f"Recovered from a loss spike: {ev.message}"


def test_opening_a_run_puts_its_settings_in_the_panel(view, tmp_path):
    from denoise_studio.core.plan import TrainConfig
    from denoise_studio.core.runfolder import RunFolder
    from denoise_studio.core.spec import spec_from_dict
    data = write_folder(tmp_path / "noisy", n=5, size=40)
    cfg = TrainConfig(data=str(data), objective="n2v", noise="poisson-gaussian", gain=6.0, read=3.0, crop=24,
                      batch_size=2, steps=7, lr=0.004, seed=11)
    RunFolder.create(tmp_path / "run", spec_from_dict(TINY_SPEC), cfg.to_dict())
    assert view.open_run(tmp_path / "run")
    shown = view.config()
    for key in view.RUN_SETTINGS:
        assert getattr(shown, key) == getattr(cfg, key), key
    assert shown.data == str(data)
    (tmp_path / "run" / "config.json").write_text('{"crop": "big"}')   # damaged: the panel keeps what it had
    assert view.open_run(tmp_path / "run") and view.config().crop == 24


def test_a_folder_name_that_looks_like_markup_is_shown_as_written(view, tmp_path):
    bad = tmp_path / "<b>not bold"
    bad.mkdir()
    assert not view.open_run(bad)   # no run there: one line naming the folder, exactly as written
    assert "<b>not bold" in view.message.text()
    assert view.message.textFormat() == view.status.textFormat() == Qt.TextFormat.PlainText
