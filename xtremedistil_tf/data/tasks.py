"""Finding a task's labelled splits wherever the user keeps them: an original-release task folder, a GLUE folder,
a CoNLL folder, or TFDS by name."""
from __future__ import annotations

import dataclasses

from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.data import readers, registry
from xtremedistil_tf.errors import ConfigError


@dataclasses.dataclass
class TaskSplits:
    """A task's splits as read, with the label set and kind the model head needs (taken from train)."""

    kind: str
    label_names: list[str] | None
    pairwise: bool
    splits: dict[str, readers.TaskData]  # "train", "dev", "test" (+ MNLI's "dev_mismatched", "test_mismatched")
    glue_task: str = ""
    source: str = ""

    @property
    def num_labels(self) -> int:
        """Output units of the head: the number of labels, 1 for regression, 2 (start, end) for QA."""
        if self.kind == "qa":
            return 2
        return 1 if self.label_names is None else len(self.label_names)

    def labelled(self, split: str) -> bool:
        """True when ``split`` was found and every example of it has a label (so it can be scored)."""
        if self.kind == "qa":
            return split in self.splits and self.splits[split].has_answers
        return split in self.splits and self.splits[split].has_labels


def load_task(task: str, *, do_NER: bool = False, do_pairwise: bool = False, glue_task: str = "",
              tfds_data_dir: str | None = None, do_QA: bool = False) -> TaskSplits:
    """`task` is a folder (original format: train/dev/test.tsv; GLUE with `glue_task`; CoNLL: train/dev/test.txt
    with do_NER; SQuAD JSON: train/dev/test.json with do_QA) or a TFDS name such as `glue/sst2`, `conll2003` or
    `squad/v2.0`."""
    if do_QA:
        return load_qa_task(task, tfds_data_dir=tfds_data_dir)
    if fs.isdir(task):
        if glue_task:
            name = registry.glue_task_name(glue_task)
            raw = readers.read_glue(name, task)
            splits = {"train": raw["train"]}
            dev = raw.get("dev") or raw.get("dev_matched")
            if dev is not None:
                splits["dev"] = dev
            test = raw.get("test") or raw.get("test_matched")
            if test is not None:
                splits["test"] = test
            for k, v in raw.items():
                splits.setdefault(k, v)
            return _finish(splits, name, task)
        if do_NER and fs.isfile(fs.join(task, "train.txt")):
            train = readers.read_conll(fs.join(task, "train.txt"), train=True)
            splits = {"train": train}
            for split in ("dev", "test"):
                path = fs.join(task, f"{split}.txt")
                if fs.isfile(path):
                    splits[split] = readers.read_conll(path, label_names=train.label_names, train=False)
            return _finish(splits, "", task)
        return _finish(readers.read_task_folder(task, do_NER=do_NER, do_pairwise=do_pairwise), "", task)
    if task.startswith("glue/") or task == "conll2003":
        splits = {"train": readers.read_tfds(task, "train", data_dir=tfds_data_dir)}
        names = splits["train"].label_names
        dev_name = "validation_matched" if task.endswith("mnli") else "validation"
        splits["dev"] = readers.read_tfds(task, dev_name, data_dir=tfds_data_dir, label_names=names)
        try:
            splits["test"] = readers.read_tfds(task, "test_matched" if task.endswith("mnli") else "test",
                                               data_dir=tfds_data_dir, label_names=names)
        except Exception as e:  # noqa: BLE001 - a dataset without a test split is fine
            logging.info("%s: no test split (%s)", task, e)
        if task.endswith("mnli"):  # MNLI is also judged on its mismatched dev (and test) set
            splits["dev_mismatched"] = readers.read_tfds(task, "validation_mismatched", data_dir=tfds_data_dir,
                                                         label_names=names)
            try:
                splits["test_mismatched"] = readers.read_tfds(task, "test_mismatched", data_dir=tfds_data_dir,
                                                              label_names=names)
            except Exception as e:  # noqa: BLE001
                logging.info("%s: no test_mismatched split (%s)", task, e)
        return _finish(splits, task.split("/", 1)[1] if task.startswith("glue/") else "", task)
    raise ConfigError(f"--task={task}: not a folder, and not a TFDS name (glue/<task> or conll2003)")


def load_qa_task(task: str, *, tfds_data_dir: str | None = None) -> TaskSplits:
    """SQuAD: a folder with train.json and dev.json (and optionally test.json) in the official format, or TFDS
    `squad/v1.1` / `squad/v2.0`. The kind is "qa"; `glue_task` is "squad_v2" when any question is unanswerable."""
    from xtremedistil_tf.data.readers.squad import read_squad_json, read_tfds_squad
    if fs.isdir(task):
        splits = {}
        for split in ("train", "dev", "test"):
            path = fs.join(task, f"{split}.json")
            if fs.isfile(path):
                splits[split] = read_squad_json(path)
        if "train" not in splits or "dev" not in splits:
            raise ConfigError(f"--task={task}: a question-answering folder needs train.json and dev.json (SQuAD "
                              "format)")
    elif task.startswith("squad/"):
        splits = {"train": read_tfds_squad(task, "train", data_dir=tfds_data_dir),
                  "dev": read_tfds_squad(task, "validation", data_dir=tfds_data_dir)}
    else:
        raise ConfigError(f"--task={task}: not a folder, and not a TFDS name (squad/v1.1 or squad/v2.0)")
    version_2 = any(e.is_impossible for d in splits.values() for e in d.examples) or task.endswith("v2.0")
    return TaskSplits(kind="qa", label_names=None, pairwise=True, splits=splits,
                      glue_task="squad_v2" if version_2 else "squad", source=task)


def _finish(splits: dict, glue_task: str, source: str) -> TaskSplits:
    # A labelled train split is required; without a dev split the last 10% of train is held out (logged).
    train = splits["train"]
    if not train.has_labels:
        raise ConfigError(f"{train.path}: the training split has no labels")
    if "dev" not in splits:
        logging.warning("%s: no dev split; the last 10%% of train is held out as dev", source)
        n = max(1, len(train.examples) // 10)
        splits["dev"] = dataclasses.replace(train, examples=train.examples[-n:], path=train.path + "[-10%]")
        splits["train"] = dataclasses.replace(train, examples=train.examples[:-n])
    return TaskSplits(kind=train.kind, label_names=train.label_names, pairwise=train.pairwise, splits=splits,
                      glue_task=glue_task, source=source)
