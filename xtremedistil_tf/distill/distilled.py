"""A finished run's student as a tool: predict a file, score the task's dev/test splits, continue fine-tuning on
the labelled data (behind the predict and finetune apps).

Rows come out in the input file's order and NER predictions are one tag per word.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.data.readers import iter_transfer_file
from xtremedistil_tf.data.tasks import load_task
from xtremedistil_tf.data.tokenize import Featurizer, load_tokenizer
from xtremedistil_tf.distill.config import DistilConfig
from xtremedistil_tf.distill.outputs import STUDENT_CONFIG as CONFIG
from xtremedistil_tf.distill.outputs import STUDENT_WEIGHTS as WEIGHTS
from xtremedistil_tf.distill.run_folder import CONFIG_FILE
from xtremedistil_tf.distill.student import Student  # noqa: F401 - registers the class load_model rebuilds
from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.metrics import main_metric, score_logits
from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.models.saving import load_model, save_model
from xtremedistil_tf.progress import make_progress
from xtremedistil_tf.train import loop
from xtremedistil_tf.train.losses import LabelLoss
from xtremedistil_tf.train.trainer import Batching, LossModel, Trainer

FT_WEIGHTS = "xtremedistil-ft.weights.h5"


class DistilledModel:
    """A finished run's student, its tokenizer and its task settings."""

    def __init__(self, model_dir: str, *, weights: str = WEIGHTS):
        for name in (CONFIG_FILE, CONFIG, weights):
            if not fs.isfile(fs.join(model_dir, name)):
                raise ConfigError(f"{model_dir}: no {name}; is this a finished run_distillation.py model_dir?")
        self.model_dir = model_dir
        saved = io.read_json(fs.join(model_dir, CONFIG_FILE))
        fields = {f for f in DistilConfig.__dataclass_fields__}
        self.config = DistilConfig(**{k: v for k, v in saved.items() if k in fields})
        spec = io.read_json(fs.join(model_dir, CONFIG))
        self.label_names = spec.get("label_names")
        self.kind = spec.get("kind", self.config.kind)
        if self.kind == "qa":
            raise ConfigError(f"{model_dir} is a question-answering student: predict and fine-tune it with "
                              f"run_squad.py --model {model_dir} (--epochs 0 only scores it)")
        self.student = load_model(model_dir, weights, CONFIG)
        hf = fs.join(model_dir, "hf")
        self.tokenizer = load_tokenizer(hf if fs.isfile(fs.join(hf, "tokenizer.json"))
                                        else self.config.pt_teacher_checkpoint)
        self.featurizer = Featurizer(self.tokenizer, self.config.seq_len)
        self.strategy = tf.distribute.get_strategy()
        self._fn = lambda b: {"logits": self.student(b, training=False)["logits"]}

    def logits(self, arrays: dict, batch_size: int = 128, *, description: str = "predicting") -> np.ndarray:
        """The student's logits on featurized `arrays` (batches cut to their longest example; NER per token), with
        a progress bar in a terminal (log lines otherwise)."""
        return loop.predict(self.strategy, self._fn, {k: arrays[k] for k in INPUT_NAMES}, batch_size, trim=True,
                            token_outputs=("logits",) if self.kind == "ner" else (),
                            progress=make_progress("auto"), description=description)["logits"]

    def evaluate(self) -> dict:
        """Metrics on the task's dev and test splits (those with labels), keyed by split."""
        c = self.config
        task = load_task(c.task, do_NER=c.do_NER, do_pairwise=c.do_pairwise, glue_task=c.glue_task,
                         tfds_data_dir=c.tfds_data_dir or None)
        out = {}
        for split in ("dev", "test"):
            if task.labelled(split):
                arrays = self.featurizer.encode(task.splits[split], name=split)
                out[split] = score_logits(self.kind, self.logits(arrays), arrays["labels"],
                                          label_names=self.label_names, glue_task=task.glue_task)
                logging.info("%s: %s", split, out[split])
        return out

    def predict_file(self, pred_file: str, output: str, batch_size: int = 128) -> int:
        """Writes one line per input line: the text, then the predicted label (with its probability) or, for NER,
        the words and one tag per word."""
        c = self.config
        examples = list(iter_transfer_file(pred_file, kind=self.kind, pairwise=c.do_pairwise))
        arrays = self.featurizer.encode(examples, name=pred_file)
        logits = self.logits(arrays, batch_size)
        lines = []
        if self.kind == "ner":
            pred = logits.argmax(-1)
            for ex, p_row, w_row in zip(examples, pred, arrays["word_index"]):
                tags = ["O"] * len(ex.text_a)
                for p, w in zip(p_row, w_row):
                    if w >= 0:
                        tags[w] = self.label_names[p] if p < len(self.label_names) else "O"
                lines.append(" ".join(ex.text_a) + "\t" + " ".join(tags) + "\n")
        elif self.kind == "regression":
            lines = [f"{_text(ex)}\t{float(v[0]):.6f}\n" for ex, v in zip(examples, logits)]
        else:
            probs = tf.nn.softmax(logits, axis=-1).numpy()
            for ex, p in zip(examples, probs):
                k = int(p.argmax())
                name = self.label_names[k] if self.label_names else str(k)
                lines.append(f"{_text(ex)}\t{name}\t{p[k]:.6f}\n")
        io.write_text(output, "".join(lines))
        logging.info("wrote %d predictions to %s", len(lines), output)
        return len(lines)

    def fine_tune(self, *, epochs: int, patience: int, batch_size: int, learning_rate: float, seed: int = 42):
        """Continued fine-tuning on the task's train split, early-stopped on dev; writes xtremedistil-ft.*."""
        c = self.config
        task = load_task(c.task, do_NER=c.do_NER, do_pairwise=c.do_pairwise, glue_task=c.glue_task,
                         tfds_data_dir=c.tfds_data_dir or None)
        train = self.featurizer.encode(task.splits["train"], name="train")
        dev = self.featurizer.encode(task.splits["dev"], name="dev")
        student = self.student
        variables = [v for v in student.trainable_variables
                     if not (c.word_embeddings_frozen and v is student.encoder.embeddings.word_embeddings.embeddings)]
        ner = self.kind == "ner"
        model = LossModel(student, [LabelLoss(self.kind)], token_mask=ner)
        metric = main_metric(self.kind, task.glue_task)

        def score(_):
            m = score_logits(self.kind, self.logits(dev), dev["labels"], label_names=self.label_names,
                             glue_task=task.glue_task)
            return m[metric], m

        batching = Batching(batch_size, token_keys=INPUT_NAMES + (("labels",) if ner else ()), trim=True,
                            drop_partial=False)
        result = Trainer(self.strategy, seed=seed, log_every=0).fit(
            "fine-tuning", model, variables=variables, optimizer=loop.make_optimizer(learning_rate, epsilon=1e-8),
            batching=batching, checkpoint_dir=fs.join(self.model_dir, "checkpoints", "ft"),
            load_chunk=lambda _: {"train": train}, score=score, epochs=epochs, patience=patience)
        save_model(student, self.model_dir, FT_WEIGHTS, "student-ft-config.json",
                   extra={"label_names": self.label_names, "kind": self.kind})
        return result


def _text(ex) -> str:
    return ex.text_a if ex.text_b is None else f"{ex.text_a}\t{ex.text_b}"
