"""Progress of the long loops (progress.py): a Keras progress bar on a terminal, periodic log lines with the
step out of the total and an ETA elsewhere, nothing with --progress=none; a bad --progress is a config error."""
from __future__ import annotations

import io
import logging
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from xtremedistil_tf.progress import BarProgress, LogProgress, Progress, make_progress, resolve_mode
from xtremedistil_tf.train import loop

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_PREFIX = re.compile(r"I\d{4} [^\]]*\] |INFO:absl:")  # absl's own format (app.run), or Python's default


def _message(line: str) -> str:
    return LOG_PREFIX.sub("", line, count=1)

# A tiny epoch of 10 steps of 60 ms (so Progbar, which redraws at most every 50 ms, draws the steps between) and a
# prediction pass, with --progress=auto and stderr whatever the parent made it.
SCRIPT = """
import time
import numpy as np
import tensorflow as tf
from absl import logging
from xtremedistil_tf.train import loop
from xtremedistil_tf.progress import make_progress

logging.set_verbosity(logging.INFO)
def step(batch):
    time.sleep(0.06)
    return 0.5
loop.run_epoch(step, range(10), description="stage-1 chunk 0 epoch 1", total=10,
               progress=make_progress("auto", log_every=3))
logging.info("after the bar")
arrays = {"input_ids": np.ones((40, 4), "int32"), "attention_mask": np.ones((40, 4), "int32")}
loop.predict(tf.distribute.get_strategy(), lambda b: {"x": b["input_ids"]}, arrays, 8,
             progress=make_progress("auto", log_every=2), description="evaluating dev")
"""


def _run_script(stderr_is_tty: bool) -> str:
    """SCRIPT's stderr, from a pseudo-terminal or a pipe."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    if not stderr_is_tty:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed (EIO once the child has exited)
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=slave, env=env,
                              timeout=300)
    finally:
        os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, out[-3000:]
    assert proc.stdout == b""  # the bar is on stderr, with the log lines
    return out


def test_a_terminal_gets_a_keras_progress_bar_on_stderr():
    out = _run_script(stderr_is_tty=True)
    plain = ANSI.sub("", out)
    frames = [f for f in re.split(r"[\r\n\b]+", plain) if re.match(r"\s*\d+/\d+ ", f)]
    assert "stage-1 chunk 0 epoch 1" in plain and "━" in plain
    final = [f for f in frames if f.strip().startswith("10/10")]
    assert final and re.search(r"10/10 ━{20} \d+s \d+ms/step - loss: 0\.5000", final[-1]), final
    # the frames before the end: steps done / total, the bar, the ETA (a time), the time a step, the running loss
    middle = [f for f in frames if re.match(r"\s*[1-9]/10 ", f)]
    assert middle, frames
    assert all(re.search(r"\d/10 ━+ \d+s \d+ms/step - loss: 0\.5000", f) for f in middle), middle
    # the prediction's bar (no loss), then no periodic log lines: the bar replaces them
    assert any(re.match(r"\s*5/5 ━{20} \d+s \d+[mu]?s/step\s*$", f) for f in frames), frames
    assert "steps/s" not in plain
    # an absl line after a finished bar starts on its own line
    line = next(ln for ln in plain.replace("\r\n", "\n").split("\n") if "after the bar" in ln)
    assert LOG_PREFIX.match(line) and _message(line) == "after the bar", repr(line)


def test_elsewhere_plain_log_lines_with_step_out_of_total_and_eta():
    out = _run_script(stderr_is_tty=False)
    assert "━" not in out and "\r" not in out and "\x1b" not in out
    lines = [_message(ln) for ln in out.splitlines() if LOG_PREFIX.match(ln) and ": step " in ln]
    train = [ln for ln in lines if ln.startswith("stage-1")]
    assert [re.match(r"stage-1 chunk 0 epoch 1: step (\d+)/10, ", ln).group(1) for ln in train] == ["3", "6", "9"]
    assert all(re.fullmatch(r"stage-1 chunk 0 epoch 1: step \d/10, loss 0\.50000, [\d.]+ steps/s, ETA \d+s", ln)
               for ln in train), train
    evaluation = [ln for ln in lines if ln.startswith("evaluating dev")]
    assert re.fullmatch(r"evaluating dev: step 2/5, [\d.]+ steps/s, ETA \d+s", evaluation[0]), evaluation
    assert re.fullmatch(r"evaluating dev: step 4/5, [\d.]+ steps/s, ETA \d+s", evaluation[1]), evaluation


def _epoch(progress, total=6, losses=(0.5,) * 6):
    it = iter(losses)
    return loop.run_epoch(lambda batch: next(it), range(len(losses)), description="teacher chunk 0 epoch 2",
                          total=total, progress=progress)


def test_log_lines_in_process(caplog):
    caplog.set_level(logging.INFO)
    _epoch(make_progress("log", log_every=2))
    lines = [r.getMessage() for r in caplog.records if ": step " in r.getMessage()]
    assert [ln.split(",")[0] for ln in lines] == ["teacher chunk 0 epoch 2: step 2/6", "teacher chunk 0 epoch 2: "
                                                  "step 4/6", "teacher chunk 0 epoch 2: step 6/6"]
    assert "ETA" in lines[0] and "ETA" in lines[1] and "ETA" not in lines[2]  # none once done
    caplog.clear()
    _epoch(make_progress("log", log_every=2), total=None)  # an unknown total: the step alone, no ETA
    lines = [r.getMessage() for r in caplog.records if ": step " in r.getMessage()]
    assert lines[0].startswith("teacher chunk 0 epoch 2: step 2, loss 0.50000, ") and "ETA" not in lines[0]


def test_none_reports_nothing(caplog, capsys):
    caplog.set_level(logging.INFO)
    assert type(make_progress("none", log_every=1)) is Progress
    assert type(make_progress("log", log_every=0)) is Progress  # log lines off
    assert _epoch(make_progress("none", log_every=1)) == pytest.approx(0.5)
    arrays = {"input_ids": np.ones((20, 4), "int32")}
    import tensorflow as tf
    loop.predict(tf.distribute.get_strategy(), lambda b: {"x": b["input_ids"]}, arrays, 4,
                 progress=make_progress("none"))
    assert not [r for r in caplog.records if "step" in r.getMessage()]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_auto_is_a_bar_on_a_terminal_and_log_lines_elsewhere():
    assert resolve_mode("auto", _Stream(True)) == "bar" and resolve_mode("auto", _Stream(False)) == "log"
    assert resolve_mode("bar", _Stream(False)) == "bar" and resolve_mode("none", _Stream(True)) == "none"
    assert isinstance(make_progress("auto", stream=_Stream(True)), BarProgress)
    assert isinstance(make_progress("auto", stream=_Stream(False)), LogProgress)
    with pytest.raises(ValueError, match="fancy"):
        resolve_mode("fancy")


def test_a_bar_ends_its_line_when_the_loop_raises():
    stream = _Stream(True)
    with pytest.raises(loop.NonFiniteLossError, match="at step 3"):
        _epoch(BarProgress(stream), losses=(0.5, 0.4, float("nan"), 0.3))
    text = ANSI.sub("", stream.getvalue())
    assert text.startswith("teacher chunk 0 epoch 2\n") and text.endswith("\n")
    assert re.search(r"2/6 ━+ \d+s \d+[mu]?s/step - loss: 0\.4500\s*\n$", text), repr(text[-200:])


def test_a_bad_progress_value_is_a_config_error():
    from xtremedistil_tf.apps.glue import GlueConfig
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.errors import ConfigError
    message = "--progress='fancy': expected one of auto, bar, log, none"
    assert message in GlueConfig(task="sst2", model="m", output_dir="o", progress="fancy").problems()
    with pytest.raises(ConfigError, match=re.escape(message)):
        DistilConfig(task="glue/sst2", model_dir="runs/x", progress="fancy").validate_flags()
    assert "progress" in GlueConfig.NEUTRAL_KEYS and "progress" in DistilConfig.NEUTRAL_KEYS
