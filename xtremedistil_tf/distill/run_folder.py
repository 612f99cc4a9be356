"""A run's folder (model_dir): its paths, the saved configuration a rerun must match, the progress state written
after every step, and the stage checkpoints kept or pruned. Every write is atomic, so a crash never leaves a
half-written file and a rerun continues where the last one stopped."""
from __future__ import annotations

import numpy as np
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.distill.config import DistilConfig, diff_configs
from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.train.checkpoint import get_weights, set_weights

CONFIG_FILE = "xtremedistil-config.json"
STATE_FILE = "run_state.json"
METRICS_FILE = "metrics.json"
SELECTED = "selected.npz"
# Keys of the saved configuration that are filled in once the teacher is known, not flags.
_DERIVED_KEYS = ("teacher_hidden_size", "label_list")


class RunFolder:
    """model_dir of one run. Non-chief workers write into a folder of their own (their files are not kept).

    Args:
      folder: the run's folder.
      chief: whether this process writes the shared outputs.
    """

    def __init__(self, folder: str, *, chief: bool):
        self.folder = folder
        self.chief = chief
        removed = io.clean_stale_temporaries(folder)
        if removed:
            logging.info("removed %d leftovers of interrupted writes in %s", removed, folder)

    def path(self, *parts) -> str:
        """A path inside the run's folder."""
        return fs.join(self.folder, *parts)

    def check_config(self, config: DistilConfig) -> None:
        """Refuses a folder that holds a run with different flags, listing the differences."""
        path = self.path(CONFIG_FILE)
        if fs.isfile(path):
            saved = {k: v for k, v in io.read_json(path).items() if k not in _DERIVED_KEYS}
            diffs = diff_configs(saved, config.fingerprint())
            if diffs:
                raise ConfigError(f"{config.model_dir} holds a run with different flags; use a new --model_dir "
                                  "or the same flags. Differences:\n  " + "\n  ".join(diffs))

    def save_config(self, config: DistilConfig, **derived) -> None:
        """Writes xtremedistil-config.json once (the flags plus `derived` values such as the teacher's width)."""
        if self.chief and not fs.isfile(self.path(CONFIG_FILE)):
            io.write_json(self.path(CONFIG_FILE), {**config.to_json(), **derived})

    def load_state(self) -> dict:
        """The progress state: finished stages, the selected stage, the teacher's scores, whether the run is done."""
        path = self.path(STATE_FILE)
        return io.read_json(path) if fs.isfile(path) else \
            {"stages": {}, "selected": None, "finished": False, "teacher": None}

    def save_state(self, state: dict) -> None:
        """Writes the progress state (chief only), so a rerun skips what is done."""
        if self.chief:
            io.write_json(self.path(STATE_FILE), state)

    def read_metrics(self) -> dict:
        """The run's metrics.json, or {} before it is written."""
        path = self.path(METRICS_FILE)
        return io.read_json(path) if fs.isfile(path) else {}

    def stage_checkpoint(self, name: str) -> str:
        """The checkpoint folder of stage `name` (checkpoints/<name>)."""
        return self.path("checkpoints", name)

    def save_selected(self, model) -> None:
        """The selected stage's weights. Every worker keeps its own copy (non-chief workers in their own folder),
        so all of them finish with the same model."""
        with io.atomic_path(self.path("checkpoints", SELECTED)) as tmp, open(tmp, "wb") as f:
            np.savez(f, *get_weights(model))

    def load_selected(self, model) -> None:
        """Sets `model`'s weights to the selected stage's (saved by save_selected)."""
        data = io.load_npz(self.path("checkpoints", SELECTED))
        set_weights(model, [data[f"arr_{i}"] for i in range(len(data))])

    def prune_checkpoints(self, names: list[str]) -> None:
        """Removes the checkpoints of stages that are finished and superseded."""
        if self.chief:
            for name in names:
                fs.rmtree(self.stage_checkpoint(name))
