"""Entry points start quietly: TensorFlow's C++ start-up notices (oneDNN, CUDA probing on a machine without a GPU)
stay off stderr unless --verbose, and everything else written to stderr meanwhile still comes out."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import tiny_setup

_TF_LINE = re.compile(r"^[IWEF]\d{4} |oneDNN|cuInit|cudart_stub|absl::InitializeLog", re.M)


def _run(code_or_args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], env=tiny_setup.subprocess_env(),
                          cwd=str(tiny_setup.REPO_ROOT), capture_output=True, text=True, timeout=300)


def test_a_cpu_run_starts_without_tensorflow_notices_and_shows_its_error(tmp_path):
    result = _run(["run_distillation.py", f"--task={tmp_path}/missing", f"--model_dir={tmp_path}/run"])
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: invalid paths:", result.stderr
    assert f"--task={tmp_path}/missing: no such folder" in result.stderr
    assert not _TF_LINE.search(result.stderr), result.stderr


def test_verbose_keeps_everything(tmp_path):
    result = _run(["run_distillation.py", f"--task={tmp_path}/missing", f"--model_dir={tmp_path}/run", "--verbose"])
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "no such folder" in result.stderr


def test_only_start_up_notices_are_left_out_and_nothing_is_lost_at_exit():
    code = r"""
import os, sys
from xtremedistil_tf.cli import quiet_start, end_quiet_start
quiet_start([])
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1796418703.567045   26997 port.cc:153] oneDNN custom operations are on. You may see\n")
os.write(2, b"E0000 00:00:1796418707.526575   26997 some_kernel.cc:52] a real problem\n")
print("python's own stderr line", file=sys.stderr)
end_quiet_start()
quiet_start([])
os.write(2, b"I0000 00:00:1796418703.567448   26997 cudart_stub.cc:31] Could not find cuda drivers on your machine\n")
sys.stderr.write("said just before exiting without end_quiet_start\n")
sys.exit(3)
"""
    result = _run(["-c", code])
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        "E0000 00:00:1796418707.526575   26997 some_kernel.cc:52] a real problem",
        "python's own stderr line",
        "said just before exiting without end_quiet_start"], result.stderr


def test_entry_points_turn_on_onednn_unless_the_user_chose():
    """TensorFlow enables its oneDNN kernels by itself only on AVX-512 VNNI/BF16 or AMX CPUs; our entry points ask
    for them everywhere (before TensorFlow is imported), and a user's own setting wins."""
    code = ("import xtremedistil_tf.cli, tensorflow, os; "
            "from tensorflow.python.util import _pywrap_util_port as port; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for setting, expected in ((None, "1 True"), ("0", "0 False")):
        run_env = env if setting is None else {**env, "TF_ENABLE_ONEDNN_OPTS": setting}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.split()[-2:] == expected.split(), (setting, out.stdout, out.stderr[-2000:])


def test_tensorflow_bookkeeping_lines_are_left_out_unless_verbose(tmp_path):
    """A checkpoint save logs TensorFlow's "Sharding callback duration" at INFO: not shown in a run (absl at INFO),
    shown with --verbose; the run's own INFO lines and TensorFlow's warnings always are."""
    code = f"""
from absl import logging
from xtremedistil_tf.cli import run_main
import tensorflow as tf
from tensorflow.python.platform import tf_logging
logging.set_verbosity(logging.INFO)

def main(argv):
    logging.info("our line, verbose=%s", argv[0])
    tf.train.Checkpoint(v=tf.Variable(1.0)).write({str(tmp_path)!r} + "/ckpt-" + argv[0])
    tf.saved_model.save(tf.Module(), {str(tmp_path)!r} + "/saved-" + argv[0])  # tensorflow's logger: fingerprint
    tf_logging.warning("a tensorflow warning, verbose=%s", argv[0])

for verbose in (False, True):
    run_main(main, [str(verbose)], verbose)
"""
    err = _run(["-c", code]).stderr
    assert "our line, verbose=False" in err and "our line, verbose=True" in err, err[-3000:]
    assert "a tensorflow warning, verbose=False" in err and "a tensorflow warning, verbose=True" in err
    quiet, verbose = err.split("our line, verbose=True")
    assert "Sharding callback duration" not in quiet and "Sharding callback duration" in verbose, err[-3000:]
    assert "fingerprint" not in quiet.lower() and "fingerprint" in verbose.lower(), err[-3000:]
