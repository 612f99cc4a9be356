"""How a long loop (a training epoch, a prediction pass) reports its progress: a Keras progress bar in a terminal,
plain periodic log lines elsewhere (CI, files, Cloud logs), or nothing.

A reporter is made per loop from the `--progress` mode (`make_progress`) and driven by the loop:
`start(total, description)`, `update(step, loss)` after each step, `finish()` at the end (also when the loop
raises, so the next line starts on a line of its own).

The bar goes to stderr, not to stdout where `keras.utils.Progbar` writes by default: absl's log lines go to stderr,
`--progress=auto` picks the bar because stderr is a terminal, and a bar redrawn with carriage returns does not
belong in a redirected stdout. Progbar has no stream argument, so its writes are pointed at stderr while it draws.
"""
from __future__ import annotations

import contextlib
import sys
import time

from absl import logging

PROGRESS_MODES = ("auto", "bar", "log", "none")


def resolve_mode(mode: str, stream=None) -> str:
    """`mode` with auto resolved: bar when `stream` (default: stderr) is a terminal, else log."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(PROGRESS_MODES)}")
    if mode != "auto":
        return mode
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):  # no stream, or a closed one
        return "log"


def format_duration(seconds: float) -> str:
    """12s, 4:05 or 1:02:03."""
    seconds = max(int(round(seconds)), 0)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


class Progress:
    """Reports nothing (--progress=none, or log lines turned off); the base of the other reporters.

    `update(step, loss)`: `step` counts the steps done (1-based), `loss` is the running loss to show (None for
    loops without one, such as predictions)."""

    def start(self, total: int | None, description: str) -> None:
        """A new loop of `total` steps (None: unknown) named `description`."""
        self.total, self.description = total, description
        self.step, self.loss, self.t0 = 0, None, time.time()

    def update(self, step: int, loss: float | None = None) -> None:
        self.step, self.loss = step, loss

    def finish(self) -> None:
        """The loop ended (done or raising)."""


class LogProgress(Progress):
    """A log line every `every` steps: `<description>: step k/N, loss x, r steps/s, ETA t` (`step k` and no ETA
    when the total is unknown, no loss for predictions)."""

    def __init__(self, every: int = 50, emit=None):
        self.every = every
        self.emit = emit or logging.info  # emit(format, *args), as logging.info takes them

    def update(self, step: int, loss: float | None = None) -> None:
        super().update(step, loss)
        if not self.every or step % self.every:
            return
        rate = step / max(time.time() - self.t0, 1e-9)
        parts = [f"step {step}/{self.total}" if self.total else f"step {step}"]
        if loss is not None:
            parts.append(f"loss {loss:.5f}")
        parts.append(f"{rate:.1f} steps/s")
        if self.total and step < self.total:
            parts.append(f"ETA {format_duration((self.total - step) / rate)}")
        self.emit("%s: %s", self.description, ", ".join(parts))


class BarProgress(Progress):
    """A `keras.utils.Progbar` on stderr under a line naming the loop: steps done out of the total, a bar, the ETA
    (the elapsed time once done), the time per step and the running loss."""

    def __init__(self, stream=None):
        self.stream = stream
        self._bar = None

    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def start(self, total: int | None, description: str) -> None:
        import keras
        super().start(total, description)
        out = self._out()
        out.write(f"{description}\n")
        out.flush()
        with contextlib.redirect_stdout(out):
            self._bar = keras.utils.Progbar(total, stateful_metrics=["loss"], unit_name="step")

    def update(self, step: int, loss: float | None = None) -> None:
        super().update(step, loss)
        if self._bar is not None:
            with contextlib.redirect_stdout(self._out()):
                self._bar.update(step, [("loss", loss)] if loss is not None else None)

    def finish(self) -> None:
        """Draws the last state and ends the bar's line (Progbar does so itself only on reaching the total)."""
        bar, self._bar = self._bar, None
        if bar is not None and (bar.target is None or self.step < bar.target):
            with contextlib.redirect_stdout(self._out()):
                bar.update(self.step, [("loss", self.loss)] if self.loss is not None else None, finalize=True)


def make_progress(mode: str, *, log_every: int = 50, stream=None, emit=None) -> Progress:
    """A reporter for one loop: bar, log (a line every `log_every` steps through `emit`, default `logging.info`;
    nothing with 0) or none; auto is bar when `stream` (default: stderr) is a terminal, else log. Under
    `keras.config.disable_interactive_logging()` Progbar would log every redraw, so a bar falls back to log lines
    there."""
    mode = resolve_mode(mode, stream)
    if mode == "bar":
        import keras
        if keras.config.is_interactive_logging_enabled():
            return BarProgress(stream)
        mode = "log"
    if mode == "log" and log_every:
        return LogProgress(log_every, emit)
    return Progress()
