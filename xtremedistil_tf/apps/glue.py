"""run_glue.py: fine-tune any encoder on a GLUE task or on NER, and evaluate it with the benchmarks' own metrics.

The model is a Hugging Face folder or hub id, a folder written by this project (`save_keras`, a distilled
`model_dir` of run_distillation.py, or its `teacher/` folder). Training is the shared `train.trainer.Trainer`
(checkpointed every epoch, so rerunning the same command after a crash resumes), as the distiller's teacher
fine-tuning. The best epoch on dev is kept. A
model whose head already fits the task (same kind and labels: a distilled student on its own task, an exported
fine-tuned model) keeps it; otherwise a new head is trained. `--epochs=0` only evaluates.

Outputs in `output_dir`: `metrics.json` (configuration, data counts, per-epoch loss and dev metrics, the final
dev metrics, MNLI matched and mismatched, test metrics when the test split has labels), `run.log`, the model as a
Hugging Face folder (`hf/`), a SavedModel (`saved_model/`) and Keras weights + config (`keras/`), GLUE-submission
predictions for the test split (`submission/<Task>.tsv`) and, for NER, `test_predictions.txt` (`word gold pred`
lines, conlleval's input; `word pred` when the test split has no labels).
"""
from __future__ import annotations

import dataclasses
import logging as py_logging
import tempfile
import time

import numpy as np
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.config import RuntimeConfig, option
from xtremedistil_tf.data import registry
from xtremedistil_tf.deploy.config import DeployOptions
from xtremedistil_tf.distill.outputs import STUDENT_CONFIG, STUDENT_WEIGHTS
from xtremedistil_tf.errors import ConfigError, UserError
from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.models.heads import TOKEN_KINDS
from xtremedistil_tf.train.tensorboard import NoRecorder, Recorder, run_recorder

TASKS = registry.GLUE_TASKS + ("ner",)
# File names the GLUE server expects in a submission zip.
LR_SCHEDULES = ("linear", "constant")
METRICS_FILE = "metrics.json"
CONFIG_FILE = "run_config.json"
LOG_FILE = "run.log"
CHECKPOINT_DIR = "checkpoint"


@dataclasses.dataclass
class GlueConfig(RuntimeConfig, DeployOptions):
    """run_glue.py's flags."""

    NEUTRAL_KEYS = RuntimeConfig.NEUTRAL_KEYS + DeployOptions.NEUTRAL_KEYS + (
        "export_hf", "export_saved_model", "export_keras")

    task: str = option("", f"one of {', '.join(TASKS)}")
    model: str = option("", "the model to fine-tune: a Hugging Face folder or hub id, a folder written by save_keras, "
                            "a distilled model_dir of run_distillation.py (student-config.json + "
                            "xtremedistil.weights.h5) or its teacher/ folder")
    output_dir: str = option("", "where metrics.json, the fine-tuned model, the predictions and the checkpoint go")
    data_dir: str = option("", "the GLUE task folder (or the glue/ folder above it), or for --task=ner a CoNLL folder "
                               "(train.txt, dev.txt, test.txt); empty: TFDS glue/<task> (conll2003 for ner)")
    tokenizer: str = option("", "tokenizer folder or hub id (default: the model's own tokenizer files)")
    seq_len: int = option(128, "maximum sequence length in tokens (each split is padded to its longest example, at "
                               "most this)")
    batch_size: int = option(32, "per-replica training batch size")
    eval_batch_size: int = option(128, "per-replica batch size for evaluation and prediction")
    learning_rate: float = option(5e-5, "peak Adam learning rate")
    lr_schedule: str = option("linear", "linear (warm-up then linear decay to 0, as BERT) or constant")
    warmup_proportion: float = option(0.1, "fraction of the training steps spent warming up (linear schedule)")
    weight_decay: float = option(0.0, "AdamW weight decay (biases and layer norms excluded); 0: Adam")
    epochs: int = option(3, "maximum training epochs (0: evaluate the model as it is)")
    patience: int = option(2, "stop after this many epochs without a better dev score; the best epoch is kept")
    max_train_examples: int = option(0, "train on a random sample of this many training examples (0: all)")
    group_by_length: bool = option(True, "train on batches of examples of similar length (a seeded shuffle, then a "
                                         "sort by length within every 50 batches, the batches in random order): with "
                                         "batches cut to their longest example, several times faster on short texts")
    export_hf: bool = option(True, "write the fine-tuned model as a Hugging Face folder (output_dir/hf)")
    export_saved_model: bool = option(True, "write a TF SavedModel (output_dir/saved_model)")
    export_keras: bool = option(True, "write Keras weights + config (output_dir/keras)")

    @property
    def kind_hint(self) -> str:
        """The kind of task --task implies (ner, regression for STS-B, else classification), checked against
        the data."""
        return "ner" if self.task == "ner" else ("regression" if self.task == "stsb" else "classification")

    def validate(self) -> None:
        """Raises ConfigError naming the first bad flag, so mistakes stop the run before any model or data loads."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems[0])

    def task_problems(self) -> list[str]:
        """What is wrong with --task and the data flags."""
        if self.task not in TASKS:
            return [f"--task={self.task!r}: expected one of {', '.join(TASKS)}"]
        if self.data_dir and not fs.isdir(self.data_dir):
            return [f"--data_dir={self.data_dir}: no such folder"]
        return []

    def problems(self) -> list[str]:
        """Every problem of the flags, the first one the most basic."""
        problems = self.task_problems()
        if not self.model:
            problems.append("--model is required (a Hugging Face folder or hub id, or a distilled model_dir)")
        if not self.output_dir:
            problems.append("--output_dir is required")
        if self.tokenizer and not fs.exists(self.tokenizer) and (self.tokenizer.startswith((".", "/"))
                                                                  or fs.is_remote(self.tokenizer)):
            problems.append(f"--tokenizer={self.tokenizer}: no such folder")
        checks = [(self.seq_len >= 4, "--seq_len must be at least 4"),
                  (self.batch_size > 0, "--batch_size must be positive"),
                  (self.eval_batch_size > 0, "--eval_batch_size must be positive"),
                  (self.learning_rate > 0, "--learning_rate must be positive"),
                  (self.lr_schedule in LR_SCHEDULES, f"--lr_schedule must be one of {', '.join(LR_SCHEDULES)}"),
                  (0 <= self.warmup_proportion < 1, "--warmup_proportion must be in [0, 1)"),
                  (self.weight_decay >= 0, "--weight_decay must be >= 0"),
                  (self.epochs >= 0, "--epochs must be >= 0 (0: evaluate only)"),
                  (self.patience > 0, "--patience must be positive"),
                  (self.max_train_examples >= 0, "--max_train_examples must be >= 0 (0: all)")]
        return (problems + [message for ok, message in checks if not ok] + self.runtime_problems()
                + self.deploy_problems())

    def to_json(self) -> dict:
        """Every flag as a JSON-ready dict (logged at start and stored in metrics.json)."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> dict:
        """The values that decide what a run computes (what a rerun into the same output_dir must repeat)."""
        return {k: v for k, v in self.to_json().items() if k not in self.NEUTRAL_KEYS}


# ------------------------------------------------------------------------------------------------------------ model
@dataclasses.dataclass
class LoadedTaskModel:
    """What load_task_model found: the TaskModel, where its tokenizer comes from, the source's format and whether
    the head is new or reused (all reported in metrics.json)."""
    model: object  # TaskModel
    tokenizer_source: str
    format: str
    head: str  # "new" or where the reused head came from


def _tokenizer_files(folder: str) -> bool:
    from xtremedistil_tf.convert.export import find_tokenizer_files
    return bool(find_tokenizer_files(folder))


def _compatible_names(theirs, ours) -> bool:
    """A checkpoint's head fits our labels if it names them the same way, or does not name them at all."""
    if not theirs or ours is None:
        return True
    theirs = [str(x) for x in theirs]
    return theirs == [str(x) for x in ours] or all(x.upper().startswith("LABEL_") for x in theirs)


def load_task_model(source: str, *, kind: str, num_labels: int, label_names, tokenizer: str = "") -> LoadedTaskModel:
    """A TaskModel for the task on the encoder of `source`; the source's own head is kept when it is a head for
    the same kind of task with the same labels (a distilled student judged on its task, a fine-tuned checkpoint),
    otherwise a new head is initialised. Call under the strategy's scope."""
    from xtremedistil_tf.models.heads import TaskModel
    found = None  # (model, format, label_names, tokenizer folder)
    if fs.isdir(source) and all(fs.isfile(fs.join(source, f)) for f in (STUDENT_CONFIG, STUDENT_WEIGHTS)):
        from xtremedistil_tf.distill.student import Student  # noqa: F401 - registers the class load_model rebuilds
        from xtremedistil_tf.models.saving import load_model
        student = load_model(source, STUDENT_WEIGHTS, STUDENT_CONFIG)
        spec = io.read_json(fs.join(source, STUDENT_CONFIG))
        model = student
        if not isinstance(student, TaskModel) and student.kind == kind and student.num_labels == num_labels \
                and _compatible_names(spec.get("label_names"), label_names):
            try:  # the student's head (projected or not) folded into a TaskModel head
                model = student.to_task_model()
            except ValueError as e:
                logging.warning("%s: the student's head cannot be kept (%s); a new head is trained", source, e)
                model = student.encoder
        elif not isinstance(student, TaskModel):
            model = student.encoder
        tok = next((d for d in (fs.join(source, "hf"), source) if _tokenizer_files(d)), "")
        found = (model, "distilled", spec.get("label_names"), tok)
    else:
        from xtremedistil_tf.distill.teacher import TEACHER_CONFIG, TEACHER_WEIGHTS, has_saved_teacher
        from xtremedistil_tf.models.saving import load_model
        if fs.isdir(source) and has_saved_teacher(source):
            model = load_model(source, TEACHER_WEIGHTS, TEACHER_CONFIG)
            found = (model, "teacher", None, source if _tokenizer_files(source) else "")
        else:
            from xtremedistil_tf.convert.export import load_any
            loaded = load_any(source)
            found = (loaded.model, loaded.format, loaded.label_names, loaded.tokenizer or "")
    model, fmt, their_names, tok = found
    tok = tokenizer or tok or ("" if fs.exists(source) else source)
    if not tok:
        raise ConfigError(f"--model={source}: no tokenizer files there (tokenizer.json / vocab.txt); pass "
                          "--tokenizer=<folder or hub id>")
    if isinstance(model, TaskModel):
        if model.kind == kind and model.num_labels == num_labels and _compatible_names(their_names, label_names):
            logging.info("keeping the %s head of %s (%s, %d output(s))", model.head_style, source, kind, num_labels)
            return LoadedTaskModel(model, tok, fmt, head=source)
        logging.info("%s has a %s head with %d output(s); a new %s head with %d output(s) replaces it", source,
                     model.kind, model.num_labels, kind, num_labels)
        encoder = model.encoder
    else:
        encoder = model
    task_model = TaskModel(encoder, num_labels, kind=kind, name="task_model")
    task_model.build()
    return LoadedTaskModel(task_model, tok, fmt, head="new")


# ------------------------------------------------------------------------------------------------------------ NER
def ner_word_tags(logits: np.ndarray, word_index: np.ndarray, examples, label_names) -> tuple[list[list[str]], int]:
    """Per-word predicted tags (the prediction at each word's first sub-token); words cut off by truncation, or
    with no sub-token, are tagged O. Returns (tags per sentence, number of such words)."""
    pred = logits.argmax(-1)
    out, missing = [], 0
    for row, widx, ex in zip(pred, word_index, examples):
        tags = [None] * len(ex.text_a)
        for p, w in zip(row, widx):
            if w >= 0 and w < len(tags) and tags[w] is None:
                tags[w] = label_names[int(p)]
        missing += sum(t is None for t in tags)
        out.append([t if t is not None else "O" for t in tags])
    return out, missing


def write_conll_predictions(path: str, examples, pred_tags, label_names) -> None:
    """conlleval's input: `word gold pred` a line (`word pred` without gold), a blank line after every sentence."""
    lines = []
    for ex, tags in zip(examples, pred_tags):
        gold = [label_names[i] for i in ex.label] if ex.label is not None else None
        for i, word in enumerate(ex.text_a):
            lines.append(f"{word} {gold[i]} {tags[i]}" if gold is not None else f"{word} {tags[i]}")
        lines.append("")
    io.write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------------------ run
class GlueRun:
    """One run of run_glue.py."""

    def __init__(self, config: GlueConfig):
        self.config = config
        self.t_start = time.time()
        self._log_handler = None
        self.recorder: Recorder = NoRecorder()
        self._best_dev = None  # (score, metrics per dev split) of the best epoch this process evaluated

    def _path(self, *parts) -> str:
        return fs.join(self.output_dir, *parts)

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self) -> dict | None:
        """Returns the metrics of a finished run in output_dir with the same flags (nothing to do), else None."""
        c = self.config
        c.validate()
        self.strategy, self.chief, self.trim = c.set_up()
        self.replicas = self.strategy.num_replicas_in_sync
        self.output_dir = c.output_dir if self.chief else tempfile.mkdtemp(prefix="run-glue-worker-")
        if fs.exists(self.output_dir) and not fs.isdir(self.output_dir):
            raise ConfigError(f"--output_dir={c.output_dir}: exists and is not a folder")
        if self.chief and fs.isdir(self.output_dir) and fs.listdir(self.output_dir) \
                and not fs.isfile(self._path(CONFIG_FILE)):
            raise ConfigError(f"--output_dir={c.output_dir}: not empty and not a run_glue.py output folder; choose a "
                              "new or empty folder")
        fs.makedirs(self.output_dir)
        io.clean_stale_temporaries(self.output_dir)
        previous = self._path(CONFIG_FILE)
        if fs.isfile(previous):
            saved = io.read_json(previous)
            current = c.fingerprint()
            diffs = [f"{k}: {saved.get(k)!r} before, {current.get(k)!r} now" for k in sorted(set(saved) | set(current))
                     if k not in c.NEUTRAL_KEYS and saved.get(k) != current.get(k)]
            if diffs:
                raise ConfigError(f"{c.output_dir} holds a run with different flags; use a new --output_dir or the "
                                  "same flags. Differences:\n  " + "\n  ".join(diffs))
            metrics_path = self._path(METRICS_FILE)
            if fs.isfile(metrics_path) and io.read_json(metrics_path).get("finished"):
                logging.info("%s holds a finished run with these flags; nothing to do", c.output_dir)
                return io.read_json(metrics_path)
        elif self.chief:
            io.write_json(previous, c.fingerprint())
        if self.chief:
            handler = io.LogFileHandler(self._path(LOG_FILE))
            handler.setFormatter(py_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            absl_logger = logging.get_absl_logger()
            absl_logger.addHandler(handler)
            self._log_handler = handler
            self._log_level = absl_logger.level
            if absl_logger.getEffectiveLevel() > py_logging.INFO:  # run.log always holds the INFO lines
                absl_logger.setLevel(py_logging.INFO)
        logging.info("run_glue configuration:\n%s", "\n".join(f"  {k} = {v}" for k, v in sorted(c.to_json().items())))
        self.recorder = run_recorder(self.output_dir, c, chief=self.chief)
        self.recorder.record_config(c.to_json())
        return None

    def close(self):
        """Closes the TensorBoard events, detaches run.log and restores the absl log level, so later runs in the
        same process log normally."""
        self.recorder.close()
        if self._log_handler is not None:
            logging.get_absl_logger().removeHandler(self._log_handler)
            logging.get_absl_logger().setLevel(self._log_level)
            self._log_handler.close()
            self._log_handler = None

    # ------------------------------------------------------------------------------------------------ data
    def load_data(self):
        """Reads the task (--data_dir, else TFDS), checks its kind matches --task, samples train if
        --max_train_examples, and picks the dev and test splits to score."""
        from xtremedistil_tf.data.tasks import load_task
        c = self.config
        ner = c.task == "ner"
        if c.data_dir:
            self.task = load_task(c.data_dir, do_NER=ner, glue_task="" if ner else c.task,
                                  tfds_data_dir=c.tfds_data_dir or None)
        else:
            name = "conll2003" if ner else f"glue/{c.task}"
            logging.info("no --data_dir: reading TFDS %s", name)
            self.task = load_task(name, do_NER=ner, tfds_data_dir=c.tfds_data_dir or None)
        if self.task.kind != c.kind_hint:
            raise ConfigError(f"--task={c.task} is a {c.kind_hint} task but {self.task.source} holds "
                              f"{self.task.kind} data")
        self.kind = self.task.kind
        self.glue_task = "" if ner else c.task
        self.label_names = self.task.label_names
        self.num_labels = len(self.label_names) if self.label_names else 1
        train = self.task.splits["train"]
        self.train_total = len(train)
        if c.max_train_examples and c.max_train_examples < len(train):
            rng = np.random.RandomState(c.seed)
            keep = np.sort(rng.choice(len(train), c.max_train_examples, replace=False))
            self.task.splits["train"] = dataclasses.replace(
                train, examples=[train.examples[i] for i in keep], path=f"{train.path}[sample {len(keep)}]")
            logging.info("train: a random sample of %d of the %d examples (--max_train_examples, seed %d)",
                         len(keep), len(train), c.seed)
        self.eval_splits = ["dev"] + (["dev_mismatched"] if "dev_mismatched" in self.task.splits else [])
        self.test_splits = [s for s in ("test", "test_mismatched") if s in self.task.splits]
        logging.info("data from %s: %s; labels: %s", self.task.source,
                     ", ".join(f"{s} {len(d)}" for s, d in self.task.splits.items()
                               if s in ("train", *self.eval_splits, *self.test_splits)),
                     self.label_names if self.label_names else "regression")

    def featurize(self):
        """Tokenizes every split (each padded to its longest example); fails if dev lacks labels or the tokenizer's
        ids overflow the model's vocabulary (a tokenizer that does not match the model)."""
        from xtremedistil_tf.data.tokenize import Featurizer, load_tokenizer
        c = self.config
        self.tokenizer = load_tokenizer(self.model_info.tokenizer_source)
        featurizer = Featurizer(self.tokenizer, c.seq_len, pad_to="longest")
        self.arrays = {}
        for split in ("train", *self.eval_splits, *self.test_splits):
            data = self.task.splits[split]
            if split != "train" and split not in self.test_splits and not data.has_labels:
                raise ConfigError(f"{data.path}: the {split} split has no labels")
            arrays = featurizer.encode(data, name=split)
            stats = featurizer.last_stats
            logging.info("%s: %d examples, %d truncated, padded to %d tokens", split, stats["num_examples"],
                         stats["num_truncated"], stats["padded_length"])
            self.check_token_ids(arrays)
            self.arrays[split] = arrays

    def check_token_ids(self, arrays: dict) -> None:
        """ConfigError when the tokenizer's ids overflow the model's vocabulary (a tokenizer that does not match)."""
        vocab = self.model.encoder.vocab_size
        top = int(arrays["input_ids"].max(initial=0))
        if top >= vocab:
            raise ConfigError(f"the tokenizer {self.model_info.tokenizer_source} gives token id {top}, beyond the "
                              f"model's vocabulary of {vocab}: tokenizer and model do not match")

    # ------------------------------------------------------------------------------------------------ model
    def build_model(self):
        """Loads --model as a TaskModel for the task under the strategy's scope (reusing a fitting head) and
        checks --seq_len fits its position embeddings."""
        c = self.config
        with self.strategy.scope():
            self.model_info = load_task_model(c.model, kind=self.kind, num_labels=self.num_labels,
                                              label_names=self.label_names, tokenizer=c.tokenizer)
        self.model = self.model_info.model
        model = self.model
        self._logits_fn = lambda b: {"logits": model(b, training=False)["logits"]}  # one function: one trace
        enc = self.model.encoder
        if c.seq_len > enc.max_seq_len:
            raise ConfigError(f"--seq_len={c.seq_len} is longer than the model's {enc.max_seq_len} positions")
        logging.info("model: %s (%s), %s encoder, %d layers, hidden %d, %s head; %d parameters", c.model,
                     self.model_info.format, enc.architecture, enc.num_layers, enc.hidden_size,
                     "new" if self.model_info.head == "new" else "reused",
                     sum(int(np.prod(v.shape)) for v in self.model.weights))

    # ------------------------------------------------------------------------------------------------ evaluation
    def gbs(self, per_replica: int) -> int:
        """The global batch size: the flags give per-replica sizes."""
        return per_replica * self.replicas

    def logits(self, split: str) -> np.ndarray:
        """The model's logits on a split (batches cut to their longest example unless --fixed_shapes; NER logits
        padded back to the split's length)."""
        from xtremedistil_tf.progress import make_progress
        from xtremedistil_tf.train import loop
        c = self.config
        arrays = self.arrays[split]
        return loop.predict(self.strategy, self._logits_fn, {k: arrays[k] for k in INPUT_NAMES},
                            self.gbs(c.eval_batch_size), trim=self.trim,
                            token_outputs=("logits",) if self.kind in TOKEN_KINDS else (),
                            progress=make_progress(c.progress, log_every=c.log_every), jit_compile=c.jit_compile,
                            description=f"predicting {split} ({len(arrays['input_ids'])} examples)")["logits"]

    def evaluate(self, split: str, logits: np.ndarray | None = None) -> dict:
        """The split's metrics; NER over every word (a word lost to truncation counts as predicted O)."""
        from xtremedistil_tf import metrics
        from xtremedistil_tf.metrics import score_logits
        logits = self.logits(split) if logits is None else logits
        if self.kind == "ner":
            data = self.task.splits[split]
            tags, missing = ner_word_tags(logits, self.arrays[split]["word_index"], data.examples, self.label_names)
            gold = [[self.label_names[i] for i in ex.label] for ex in data.examples]
            m = metrics.ner_metrics(gold, tags)
            out = {k: float(m[k]) for k in ("precision", "recall", "f1", "accuracy")}
            out.update(words_without_prediction=missing, per_type=m["per_type"])
            return out
        return score_logits(self.kind, logits, self.arrays[split]["labels"], label_names=self.label_names,
                            glue_task=self.glue_task)

    def dev_score(self) -> tuple[float, dict]:
        """Selection score (the task's main metric on dev) and the flat per-epoch metrics (MNLI: + mismatched_*).
        Keeps the full metrics of the best epoch seen, which are the final dev metrics when it is the one kept."""
        from xtremedistil_tf.metrics import main_metric
        full, flat = {}, {}
        for split in self.eval_splits:
            full[split] = self.evaluate(split)
            prefix = "" if split == "dev" else "mismatched_"
            flat.update({prefix + k: float(v) for k, v in full[split].items() if isinstance(v, float)})
        score = flat[main_metric(self.kind, self.glue_task)]
        if self._best_dev is None or score > self._best_dev[0]:
            self._best_dev = (score, full)
        return score, flat

    # ------------------------------------------------------------------------------------------------ training
    def train(self) -> dict:
        """Fine-tunes with the shared Trainer (checkpointed, resumable, early-stopped on the dev score, best epoch
        kept); returns the per-epoch history, best epoch and timing for metrics.json."""
        from xtremedistil_tf.train import loop
        from xtremedistil_tf.train.losses import LabelLoss
        from xtremedistil_tf.train.schedules import warmup_linear_decay
        from xtremedistil_tf.train.trainer import Batching, LossModel, Trainer
        c, model, kind = self.config, self.model, self.kind
        train = {k: v for k, v in self.arrays["train"].items() if k in (*INPUT_NAMES, "labels")}
        n = len(train["input_ids"])
        batching = Batching(self.gbs(c.batch_size), token_keys=INPUT_NAMES + (("labels",) if kind == "ner" else ()),
                            trim=self.trim, group_by_length=c.group_by_length)
        gbs = batching.global_batch_size
        steps_per_epoch = n // gbs if n >= gbs else 1
        total_steps = steps_per_epoch * c.epochs
        variables = model.trainable_variables
        if kind in TOKEN_KINDS and model.encoder.pooler is not None:  # token heads do not use the pooler
            pooler = model.encoder.pooler.weights
            variables = [v for v in variables if all(v is not p for p in pooler)]
        with self.strategy.scope():
            if c.lr_schedule == "linear":
                lr = warmup_linear_decay(c.learning_rate, int(round(c.warmup_proportion * total_steps)), total_steps)
            else:
                lr = c.learning_rate
            optimizer = loop.make_optimizer(lr, epsilon=1e-8, weight_decay=c.weight_decay or None)
            if c.weight_decay:
                getattr(optimizer, "inner_optimizer", optimizer).exclude_from_weight_decay(
                    var_names=["bias", "gamma", "beta"])

        logging.info("fine-tuning on %d examples: up to %d epochs of %d steps (global batch %d), learning rate "
                     "%g (%s schedule), patience %d", n, c.epochs, steps_per_epoch, gbs, c.learning_rate,
                     c.lr_schedule, c.patience)
        trainer = Trainer(self.strategy, seed=c.seed, jit_compile=c.jit_compile,
                          steps_per_execution=c.steps_per_execution, log_every=c.log_every,
                          progress=c.progress, recorder=self.recorder)
        result = trainer.fit(c.task, LossModel(model, [LabelLoss(kind)], token_mask=kind in TOKEN_KINDS),
                             variables=variables, optimizer=optimizer, batching=batching,
                             checkpoint_dir=self._path(CHECKPOINT_DIR), load_chunk=lambda _: {"train": train},
                             score=lambda _: self.dev_score(), epochs=c.epochs, patience=c.patience)
        history = [{k: v for k, v in h.items() if k != "chunk"} for h in result.history]
        for h in history:
            h["epoch"] += 1
        best = max(history, key=lambda h: h["score"]) if history else None
        return {"epochs": history, "best_epoch": best["epoch"] if best else None,
                "best_dev_score": result.best_score, "train_seconds": round(result.wall_time, 1),
                "steps_per_epoch": steps_per_epoch, "global_batch_size": gbs}

    # ------------------------------------------------------------------------------------------------ outputs
    def predict_test(self) -> tuple[dict, dict]:
        """Test metrics (splits with labels) and the prediction files written (paths relative to output_dir)."""
        from xtremedistil_tf import metrics
        scores, files = {}, {}
        for split in self.test_splits:
            data = self.task.splits[split]
            logits = self.logits(split)
            if data.has_labels:
                scores[split] = self.evaluate(split, logits)
            if not self.chief:
                continue
            if self.kind == "ner":
                tags, _ = ner_word_tags(logits, self.arrays[split]["word_index"], data.examples, self.label_names)
                rel = f"{split}_predictions.txt"
                write_conll_predictions(self._path(rel), data.examples, tags, self.label_names)
            else:
                name = registry.submission_name(self.glue_task, split)
                rel = f"submission/{name}.tsv"
                preds = logits[:, 0] if self.kind == "regression" else logits
                metrics.write_glue_predictions(self._path(rel), self.glue_task, preds, self.label_names,
                                               index=[e.idx for e in data.examples])
            files[split] = rel
            logging.info("%s predictions (%d examples): %s", split, len(data), self._path(rel))
        return scores, files

    def export(self) -> tuple[dict, dict]:
        """Writes the requested model formats (hf/, saved_model/, keras/); returns (written, failed), a failed
        format being logged and skipped so the others and the metrics are still written."""
        from xtremedistil_tf.convert import export
        c, model = self.config, self.model
        names = self.label_names if self.kind != "regression" else None
        extra = {"task": c.task, "kind": self.kind, "label_names": self.label_names, "seq_len": c.seq_len}
        written, failed = {}, {}
        jobs = [("hf", c.export_hf, lambda p: export.export_hf(model, p, tokenizer=self.tokenizer, label_names=names)),
                ("saved_model", c.export_saved_model,
                 lambda p: export.export_saved_model(model, p, tokenizer=self.tokenizer)),
                ("keras", c.export_keras, lambda p: export.save_keras(model, p, tokenizer=self.tokenizer,
                                                                      extra=extra))]
        for name, wanted, fn in jobs:
            if not wanted:
                continue
            try:
                fn(self._path(name))
                written[name] = name
            except UserError as e:  # e.g. an encoder without the pooler its HF class needs: keep the other outputs
                logging.warning("%s export skipped: %s", name, e)
                failed[name] = str(e)
        return written, failed

    def deploy(self, final: dict, outputs: dict) -> dict:
        """int8 exports (--export_int8) of the fine-tuned model, re-scored on every labelled split in their
        runtimes, and the cost report (--cost_report); calibration rows come from the training set."""
        from xtremedistil_tf.deploy.outputs import random_rows, write_deployment
        from xtremedistil_tf.metrics import main_metric
        c = self.config
        main = main_metric(self.kind, self.glue_task)
        weights = {"hf": "hf/model.safetensors", "keras": "keras/model.weights.h5"}
        written = [self._path(weights[k]) for k in ("hf", "keras") if k in outputs]
        return write_deployment(
            c, self.output_dir, model=self.model, name="model", length=c.seq_len, num_labels=self.num_labels,
            token_level=self.kind in TOKEN_KINDS,
            calibration=random_rows(self.arrays["train"], c.int8_calibration_examples, c.seed),
            tuning=self.arrays["train"], seed=c.seed,
            splits={s: {k: self.arrays[s][k] for k in INPUT_NAMES} for s in final},
            score=self.evaluate, metric=main,
            scores={s: m[main] for s, m in final.items()}, weights_file=written[0] if written else None,
            title=f"Cost report: {c.model} fine-tuned on {c.task} ({self.output_dir})")

    def extra_metrics(self) -> dict:
        """What a task adds to metrics.json (nothing here)."""
        return {}

    def run(self) -> dict:
        """The whole run, returning its metrics (those already saved if output_dir holds the same finished run);
        run.log is closed even on failure."""
        try:
            done = self.setup()
            if done is not None:
                return done
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict:
        from xtremedistil_tf.metrics import main_metric
        c = self.config
        self.load_data()
        self.build_model()
        self.featurize()
        if c.epochs > 0:
            training = self.train()
        else:
            logging.info("--epochs=0: evaluating the model as it is")
            training = {"epochs": [], "best_epoch": None, "best_dev_score": None, "train_seconds": 0.0}
        if self._best_dev is not None and self._best_dev[0] == training["best_dev_score"]:
            final = dict(self._best_dev[1])  # the weights kept are that epoch's: no need to evaluate again
        else:
            final = {split: self.evaluate(split) for split in self.eval_splits}
        test_scores, predictions = self.predict_test()
        final.update(test_scores)
        main = main_metric(self.kind, self.glue_task)
        for split, m in final.items():
            logging.info("%s: %s", split, " ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)))
            self.recorder.scalars(f"{c.task}/final/{split}", m, step=training["best_epoch"] or 0)
        self.recorder.flush()
        outputs, export_errors = self.export() if self.chief else ({}, {})
        metrics = {
            "task": c.task, "kind": self.kind, "model": c.model, "model_format": self.model_info.format,
            "head": self.model_info.head, "tokenizer": str(self.model_info.tokenizer_source),
            "data": {"source": self.task.source, "train_total": self.train_total,
                     **{s: len(self.task.splits[s]) for s in ("train", *self.eval_splits, *self.test_splits)}},
            "label_names": self.label_names, "main_metric": main,
            **training, "final": final,
            "score": {"metric": main, **{s: final[s][main] for s in final}},
            "predictions": predictions, "outputs": outputs,
            "config": c.to_json(), "replicas": self.replicas, **self.extra_metrics(),
            "wall_seconds": round(time.time() - self.t_start, 1), "finished": True,
        }
        if export_errors:
            metrics["export_errors"] = export_errors
        if self.chief and (c.export_int8 or c.cost_report):
            metrics.update(self.deploy(final, outputs))
            metrics["wall_seconds"] = round(time.time() - self.t_start, 1)
        if self.chief:
            io.write_json(self._path(METRICS_FILE), metrics)
            fs.rmtree(self._path(CHECKPOINT_DIR))
        logging.info("done in %.1f s: dev %s = %.4f; outputs in %s", metrics["wall_seconds"], main,
                     final["dev"][main], self.output_dir)
        return metrics


def run_glue(config: GlueConfig) -> dict:
    """Runs run_glue.py with `config` and returns the metrics written to metrics.json."""
    return GlueRun(config).run()
