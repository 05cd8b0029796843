"""Figures drawn by the helper process: saved before the run goes on, errors surface, and a
helper that dies costs no figure."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from mnist_sweep.tracking import render

PNG_END = b"IEND\xaeB`\x82"  # the last chunk of a PNG file: written whole
HISTORY = {"accuracy": [0.5, 0.8], "loss": [1.2, 0.6], "val_accuracy": [0.6, 0.85]}


def _figures(log):
    return render.figures(True, on_done=lambda d: log.append(sorted(p.name for p in d.iterdir())))


def test_figures_are_drawn_by_a_helper_process_and_handed_over_when_all_are_saved():
    done = []
    with _figures(done) as figures:
        figures.draw("curves.png", "learning_curves", HISTORY)
        figures.draw("noise.png", "noise_accuracy", {0.5: 0.8, 1.0: 0.6}, 0.95)
        for name in ("curves.png", "noise.png"):  # taken by the helper: the run only waits
            _claimed(figures, name)
    assert done == [["curves.png", "noise.png"]]
    helper = render.HELPER._proc
    assert helper is not None and helper.poll() is None and helper.pid != os.getpid()


def test_saved_files_are_pngs_of_the_figure():
    seen = {}

    def keep(directory):
        seen.update({p.name: Image.open(p).size for p in directory.iterdir()})

    with render.figures(True, on_done=keep) as figures:
        figures.draw("curves.png", "learning_curves", HISTORY)
    assert seen["curves.png"][0] > 500


def _claimed(figures, filename, timeout=30.0):
    """Until the helper has taken the job (its claim file exists)."""
    deadline = time.monotonic() + timeout
    while not (figures.claims / filename).exists():
        assert time.monotonic() < deadline, f"the helper never took {filename}"
        time.sleep(0.01)


def test_a_figure_the_helper_cannot_draw_fails_the_block_and_logs_nothing():
    done = []
    with pytest.raises(RuntimeError, match="noise.png failed: .*Error"):
        with _figures(done) as figures:
            figures.draw("noise.png", "noise_accuracy", "not a mapping", 0.9)
            _claimed(figures, "noise.png")  # so the helper, not this process, tries it
    assert done == []
    with _figures(done) as figures:  # the helper carries on with the next run's figures
        figures.draw("curves.png", "learning_curves", HISTORY)
    assert done == [["curves.png"]]


def test_a_run_that_raises_drains_its_figures_so_the_next_run_gets_its_own_replies():
    done = []
    with pytest.raises(KeyError), _figures(done) as figures:
        figures.draw("bad.png", "noise_accuracy", "not a mapping", 0.9)
        figures.draw("curves.png", "learning_curves", HISTORY)
        raise KeyError("the run failed after queuing figures")
    assert done == []
    with _figures(done) as figures:
        figures.draw("noise.png", "noise_accuracy", {1.0: 0.5}, 0.9)
    assert done == [["noise.png"]]


def test_a_helper_killed_mid_figure_costs_no_figure():
    long_history = {k: list(np.linspace(0, 1, 20000)) for k in HISTORY}  # ~1 s to draw
    saved = {}
    with render.figures(True, on_done=lambda d: saved.update(
            {p.name: p.stat().st_mtime for p in d.iterdir()})) as figures:
        figures.draw("curves.png", "learning_curves", long_history)
        _claimed(figures, "curves.png")
        helper = render.HELPER._proc
        os.kill(helper.pid, signal.SIGSTOP)  # mid-figure, before it can answer
        os.kill(helper.pid, signal.SIGKILL)
        killed = time.time()
        figures.draw("noise.png", "noise_accuracy", {1.0: 0.5}, 0.9)  # drawn here instead
    assert sorted(saved) == ["curves.png", "noise.png"]
    assert saved["curves.png"] > killed  # redrawn by the run after the helper died
    done = []
    with _figures(done) as figures:  # and the next run starts a new helper
        figures.draw("curves.png", "learning_curves", HISTORY)
    assert done == [["curves.png"]] and render.HELPER._proc.poll() is None


def test_a_run_interrupted_while_waiting_leaves_no_reply_for_the_next_run():
    """Ctrl-C while the run waits on a stalled helper: the helper is replaced, so the next run
    reads its own replies (its failing figure is reported under its own name)."""
    render.HELPER.start()
    stalled = render.HELPER._proc
    os.kill(stalled.pid, signal.SIGSTOP)
    main = threading.main_thread().ident
    pngs = []
    cancelled = threading.Event()  # the test failed before the signal: send none
    sending = threading.Lock()  # cancelling and sending exclude each other

    def interrupt_once_waiting():
        # The run draws both figures itself (the helper never starts them), then blocks reading
        # the helper's replies: Ctrl-C there. (A SIGINT landing in a garbage-collection callback
        # while matplotlib draws would be printed and lost; the app's sweeper resends it.)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not cancelled.is_set() and not (
                pngs and all((pngs[0] / n).exists() for n in ("curves.png", "noise.png"))):
            time.sleep(0.05)
        time.sleep(0.5)
        with sending:
            if not cancelled.is_set():
                signal.pthread_kill(main, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_waiting)
    # Python's Ctrl-C, as at a terminal (a shell's background job inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        interrupter.start()
        with pytest.raises(KeyboardInterrupt), _figures([]) as figures:
            pngs.append(figures.directory)
            figures.draw("curves.png", "learning_curves", HISTORY)
            figures.draw("noise.png", "noise_accuracy", {1.0: 0.5}, 0.9)
    finally:
        with sending:
            cancelled.set()
        interrupter.join(timeout=10)
        signal.signal(signal.SIGINT, previous)
    assert stalled.poll() is not None  # killed, unread replies and all
    with pytest.raises(RuntimeError, match="bad.png failed"), _figures([]) as figures:
        figures.draw("bad.png", "noise_accuracy", "not a mapping", 0.9)
        _claimed(figures, "bad.png")
    done = []
    with _figures(done) as figures:
        figures.draw("curves.png", "learning_curves", HISTORY)
    assert done == [["curves.png"]]


def test_disabled_draws_nothing_and_logs_nothing():
    done = []
    with render.figures(False, on_done=done.append) as figures:
        figures.draw("curves.png", "learning_curves", HISTORY)
    assert figures.directory is None and done == []


def test_what_the_helper_has_not_started_the_run_draws_itself():
    """The helper is stopped (SIGSTOP) while the run waits: the run draws every figure before
    the helper resumes, and the helper, resumed, skips them."""
    saved = {}

    def keep(directory):
        saved.update({p.name: p.stat().st_mtime for p in directory.iterdir()})

    render.HELPER.start()
    helper = render.HELPER._proc
    os.kill(helper.pid, signal.SIGSTOP)
    resumed = []

    def resume_once_drawn(pngs):
        """SIGCONT once the run has written both PNGs whole (or after 60 s: the run waited for
        the helper instead of drawing, and the assertion below says so)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                p.exists() and p.read_bytes().endswith(PNG_END) for p in pngs):
            time.sleep(0.02)
        resumed.append(time.time())
        os.kill(helper.pid, signal.SIGCONT)

    with render.figures(True, on_done=keep) as figures:
        figures.draw("curves.png", "learning_curves", HISTORY)
        figures.draw("noise.png", "noise_accuracy", {1.0: 0.5}, 0.9)
        waiter = threading.Thread(target=resume_once_drawn, args=(
            [figures.directory / "curves.png", figures.directory / "noise.png"],))
        waiter.start()
    waiter.join()
    assert sorted(saved) == ["curves.png", "noise.png"]
    assert max(saved.values()) < resumed[0]  # drawn here while the helper was stopped
    assert helper.poll() is None and render.HELPER._proc is helper  # and it carries on
