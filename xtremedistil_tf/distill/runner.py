"""Orders the whole distillation: data, teacher, teacher outputs, the stage plan, resume, outputs.

Every piece of progress is checkpointed in model_dir (atomically), so rerunning the same command after a crash
continues where it stopped, and a finished run only reports.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import types

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from xtremedistil_tf import io
from xtremedistil_tf.data.pipeline import TransferCache, faithful_row_order
from xtremedistil_tf.data.readers import Example
from xtremedistil_tf.data.tokenize import Featurizer, check_vocabulary, faithful_ner_labels, load_tokenizer
from xtremedistil_tf.distill import losses
from xtremedistil_tf.distill.config import DistilConfig, diff_configs
from xtremedistil_tf.distill.plan import Stage, build_plan
from xtremedistil_tf.distill.student import build_student
from xtremedistil_tf.distill.teacher import (TEACHER_CONFIG, TEACHER_WEIGHTS, TeacherOutputCache, build_teacher,
                                             has_saved_teacher, load_model, save_model, weights_id)
from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.strategy import set_up_runtime
from xtremedistil_tf.train import loop
from xtremedistil_tf.train.checkpoint import PhaseCheckpoint, get_weights, set_weights
from xtremedistil_tf.train.evaluate import main_metric, score_logits
from xtremedistil_tf.train.phase import run_phase
from xtremedistil_tf.train.tasks import TaskSplits, load_task

CONFIG_FILE = "xtremedistil-config.json"
STATE_FILE = "run_state.json"
METRICS_FILE = "metrics.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def reseed_dropout(model: keras.Model, seed: int) -> None:
    """Sets every dropout seed from `seed`, so an epoch's randomness does not depend on what ran before it
    (a resumed run then equals an uninterrupted one)."""
    for i, layer in enumerate(model._flatten_layers(include_self=False, recursive=True)):
        gen = getattr(layer, "seed_generator", None)
        if gen is not None:
            gen.state.assign(np.array([seed * 1000 + i, 0], dtype=gen.state.dtype.name
                                      if hasattr(gen.state.dtype, "name") else "int64"))


def unit_seed(seed: int, *parts: int) -> int:
    value = seed
    for p in parts:
        value = (value * 1_000_003 + p + 1) % (2**31 - 1)
    return value


def split_tail(arrays: dict[str, np.ndarray], fraction: float = 0.1):
    """Keras' validation_split: the last `fraction` of the rows, before any shuffling."""
    n = len(arrays["input_ids"])
    cut = n - max(1, int(n * fraction)) if n > 1 else n
    return {k: v[:cut] for k, v in arrays.items()}, {k: v[cut:] for k, v in arrays.items()}


class Distillation:
    """One run of run_distillation.py."""

    def __init__(self, config: DistilConfig):
        self.config = config
        self.t_start = time.time()

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self):
        c = self.config
        c.validate_flags()
        c.validate_paths()
        self.strategy, self.chief, self.trim = set_up_runtime(
            seed=c.seed, deterministic=c.deterministic, opt_policy=c.opt_policy, strategy=c.strategy, tpu=c.tpu,
            fixed_shapes=c.fixed_shapes)
        self.replicas = self.strategy.num_replicas_in_sync
        self.model_dir = c.model_dir if self.chief else tempfile.mkdtemp(prefix="xtremedistil-worker-")
        self.teacher_dir = (c.teacher_model_dir or os.path.join(c.model_dir, "teacher")) if self.chief \
            else os.path.join(self.model_dir, "teacher")
        removed = io.clean_stale_temporaries(self.model_dir)
        if removed:
            logging.info("removed %d leftovers of interrupted writes in %s", removed, self.model_dir)
        self._student_from_checkpoint()
        self._check_previous_config()
        self._preflight_teacher()
        logging.info("configuration:\n%s", "\n".join(f"  {k} = {v}" for k, v in sorted(c.to_json().items())))
        self.state = io.read_json(self._path(STATE_FILE)) if os.path.isfile(self._path(STATE_FILE)) else \
            {"stages": {}, "selected": None, "finished": False, "teacher": None}

    def _path(self, *parts) -> str:
        return os.path.join(self.model_dir, *parts)

    def _check_previous_config(self):
        path = self._path(CONFIG_FILE)
        current = self.config.fingerprint()
        if os.path.isfile(path):
            saved = {k: v for k, v in io.read_json(path).items() if k not in ("teacher_hidden_size", "label_list")}
            diffs = diff_configs(saved, current)
            if diffs:
                raise ConfigError(f"{self.config.model_dir} holds a run with different flags; use a new --model_dir "
                                  "or the same flags. Differences:\n  " + "\n  ".join(diffs))

    def _student_from_checkpoint(self):
        """As the original, a --pt_student_checkpoint's own shapes replace --hidden_size, --num_hidden_layers and
        --num_attention_heads (in the config and in xtremedistil-config.json)."""
        from xtremedistil_tf.convert.hf import encoder_kwargs_from_hf, read_hf_config, resolve_source
        c = self.config
        if not c.pt_student_checkpoint:
            return
        folder = resolve_source(c.pt_student_checkpoint)
        kw = encoder_kwargs_from_hf(read_hf_config(folder), source=os.path.join(folder, "config.json"))
        for flag, key in (("hidden_size", "hidden_size"), ("num_hidden_layers", "num_layers"),
                          ("num_attention_heads", "num_heads")):
            if getattr(c, flag) != kw[key]:
                logging.info("--%s=%s replaced by the student checkpoint's %s", flag, getattr(c, flag), kw[key])
                setattr(c, flag, kw[key])

    def _preflight_teacher(self):
        """Checks the teacher's config.json and its shapes against the flags before any data or weights are read,
        so a wrong flag costs seconds. A hub id or a saved teacher is checked once loaded (prepare_teacher)."""
        from xtremedistil_tf.convert.hf import encoder_kwargs_from_hf, read_hf_config
        c = self.config
        self._teacher_spec = self._student_vocab = None
        student = c.pt_student_checkpoint
        if student and os.path.isdir(student):
            kw = encoder_kwargs_from_hf(read_hf_config(student), source=os.path.join(student, "config.json"))
            if kw["architecture"] != "bert":
                raise ConfigError(f"--pt_student_checkpoint={student}: the student must be a BERT model, found "
                                  f"{kw['architecture']}")
            self._student_vocab = kw["vocab_size"]
        folder = c.pt_teacher_checkpoint
        if has_saved_teacher(self.teacher_dir) or not os.path.isdir(folder):
            return
        kw = encoder_kwargs_from_hf(read_hf_config(folder), source=os.path.join(folder, "config.json"))
        roberta = kw["architecture"] in ("roberta", "xlm-roberta")
        self._teacher_spec = types.SimpleNamespace(
            hidden_size=kw["hidden_size"], num_heads=kw["num_heads"], num_layers=kw["num_layers"],
            vocab_size=kw["vocab_size"],
            max_seq_len=kw["max_position_embeddings"] - (kw["pad_token_id"] + 1 if roberta else 0))
        self._validate_teacher(self._teacher_spec)

    def _validate_teacher(self, teacher):
        """The teacher (its encoder, or its shapes from config.json) against the flags and the tokenizer."""
        c = self.config
        c.validate_models(teacher_hidden=teacher.hidden_size, teacher_heads=teacher.num_heads,
                          teacher_max_len=teacher.max_seq_len, teacher_layers=teacher.num_layers,
                          student_hidden=c.hidden_size, student_heads=c.num_attention_heads,
                          student_layers=c.num_hidden_layers, student_max_len=512)
        if getattr(self, "tokenizer", None) is not None:
            check_vocabulary(self.tokenizer, teacher.vocab_size, where=c.pt_teacher_checkpoint, model="the teacher")

    def _save_state(self):
        if self.chief:
            io.write_json(self._path(STATE_FILE), self.state)

    # ------------------------------------------------------------------------------------------------ data
    def load_data(self):
        c = self.config
        self.tokenizer = load_tokenizer(c.pt_teacher_checkpoint)
        if getattr(self, "_teacher_spec", None) is not None:
            self._validate_teacher(self._teacher_spec)
        if getattr(self, "_student_vocab", None) is not None:
            check_vocabulary(self.tokenizer, self._student_vocab, where=c.pt_student_checkpoint,
                             model="this student checkpoint (fed by the teacher's tokenizer)")
        self.task: TaskSplits = load_task(c.task, do_NER=c.do_NER, do_pairwise=c.do_pairwise,
                                          glue_task=c.glue_task)
        self.kind = self.task.kind
        self.token_keys = INPUTS + (("labels", "t_logits", "word_index") if self.kind == "ner" else ())
        self.label_names = self.task.label_names
        feat_kwargs = {}
        if self.kind == "ner" and c.faithful:
            self.label_names, feat_kwargs = faithful_ner_labels(self.task.label_names, self.tokenizer)
        pad_to = "longest" if (c.faithful and self.kind != "ner") else "seq_len"
        self.featurizer = Featurizer(self.tokenizer, c.seq_len, pad_to=pad_to, **feat_kwargs)
        self.arrays = {}
        for split in ("train", "dev", "test"):
            if self.task.labelled(split):
                arrays = self.featurizer.encode(self.task.splits[split], name=split)
                if c.faithful:
                    order = faithful_row_order(len(arrays["input_ids"]), c.seed)
                    arrays = {k: v[order] for k, v in arrays.items()}
                self.arrays[split] = arrays
        for split, arr in self.arrays.items():
            logging.info("%s: %d examples, padded to %d tokens", split, len(arr["input_ids"]),
                         arr["input_ids"].shape[1])
        transfer_file = c.transfer_file
        if not transfer_file:
            transfer_file = self._path("transfer-from-train.tsv")
            logging.warning("no --transfer_file: using the training texts (%d rows) as the transfer set",
                            len(self.task.splits["train"]))
            if self.chief and not os.path.isfile(transfer_file):
                io.write_text(transfer_file, "".join(_transfer_line(e) for e in self.task.splits["train"].examples))
        self.transfer = TransferCache(self._path("transfer_cache"), transfer_file, self.featurizer, kind=self.kind,
                                      pairwise=self.task.pairwise)
        self.num_chunks = self.transfer.num_chunks(c.distil_chunk_size)
        logging.info("transfer set: %d examples in %d chunk(s) of at most %d%s", self.transfer.num_examples,
                     self.num_chunks, c.distil_chunk_size,
                     f", rows shuffled with seed {c.seed} as the original did" if c.faithful else "")

    # ------------------------------------------------------------------------------------------------ teacher
    def gbs(self, per_replica: int) -> int:
        return per_replica * self.replicas

    def prepare_teacher(self):
        c = self.config
        with self.strategy.scope():
            if has_saved_teacher(self.teacher_dir):
                logging.info("loading the fine-tuned teacher from %s", self.teacher_dir)
                self.teacher = load_model(self.teacher_dir, TEACHER_WEIGHTS, TEACHER_CONFIG)
                self.teacher_word_embeddings = self.teacher.encoder.embeddings.word_embeddings.embeddings.numpy()
            else:
                teacher, loaded = build_teacher(c.pt_teacher_checkpoint, num_labels=self.task.num_labels
                                                if self.kind != "ner" else len(self.label_names),
                                                kind=self.kind, faithful=c.faithful)
                self.teacher = teacher
                self.teacher_word_embeddings = teacher.encoder.embeddings.word_embeddings.embeddings.numpy()
                self._validate_teacher(teacher.encoder)  # before fine-tuning, not an hour into it
                if c.teacher_is_finetuned:
                    if not teacher.load_hf_head(loaded.heads, source=c.pt_teacher_checkpoint):
                        raise ConfigError(f"--teacher_is_finetuned: {c.pt_teacher_checkpoint} has no task head "
                                          "of this task's shape")
                else:
                    self._fine_tune_teacher()
                if self.chief:
                    save_model(self.teacher, self.teacher_dir, TEACHER_WEIGHTS, TEACHER_CONFIG)
                    # Only now: a crash before the teacher is saved resumes its fine-tuning from this checkpoint.
                    shutil.rmtree(os.path.join(self.teacher_dir, "checkpoint"), ignore_errors=True)
        self._validate_teacher(self.teacher.encoder)
        if self.state.get("teacher") is None:
            self.state["teacher"] = {split: self.evaluate(self.teacher, split) for split in ("dev", "test")
                                     if split in self.arrays}
            self._save_state()
        logging.info("teacher: %s", self.state["teacher"])

    def _fine_tune_teacher(self):
        c = self.config
        teacher = self.teacher
        gbs = self.gbs(c.teacher_batch_size)
        variables = teacher.trainable_variables
        optimizer = loop.make_optimizer(c.teacher_learning_rate, epsilon=1e-8)
        loop.build_optimizer(optimizer, variables, self.strategy)
        mask_key = None if c.faithful else "attention_mask"

        def loss_fn(batch, training):
            out = teacher(_inputs(batch), training=training)
            return losses.label_loss(self.kind, out["logits"], batch["labels"],
                                     batch.get(mask_key) if mask_key else None)

        step = loop.Step(self.strategy, loss_fn, variables, optimizer, gbs, c.jit_compile)
        ckpt = PhaseCheckpoint(os.path.join(self.teacher_dir, "checkpoint"), teacher, optimizer)
        logging.info("fine-tuning the teacher on %d examples, up to %d epochs", len(self.arrays["train"]["input_ids"]),
                     c.ft_epochs)
        run_phase("teacher", model=teacher, checkpoint=ckpt, num_chunks=1, load_chunk=lambda _: self.arrays["train"],
                  train_epoch=lambda data, chunk, epoch: self._train_epoch(step, teacher, data, gbs, 0, chunk, epoch,
                                                                           "teacher"),
                  score=lambda _: self._dev_score(teacher), epochs=c.ft_epochs, patience=c.patience,
                  faithful=c.faithful, cross_chunk=False)

    def teacher_outputs(self, index: int) -> dict[str, np.ndarray]:
        """Teacher logits and (for classification) first-token representation of one transfer chunk, cached."""
        c = self.config
        chunk = self._transfer_chunk(index)
        fn = self._teacher_outputs_fn()

        def compute():
            t0 = time.time()
            out = loop.predict(self.strategy, fn, {k: chunk[k] for k in INPUTS}, self.gbs(c.teacher_batch_size),
                               trim=self.trim, token_outputs=("logits",) if self.kind == "ner" else ())
            logging.info("teacher outputs for transfer chunk %d (%d examples): %.1f s", index,
                         len(chunk["input_ids"]), time.time() - t0)
            return out

        outputs = self.teacher_cache.get(index, compute)
        return {**chunk, **{f"t_{k}": v for k, v in outputs.items()}}

    def _transfer_chunk(self, index: int) -> dict[str, np.ndarray]:
        """Chunk `index` of the transfer set: consecutive rows of the file, or in the faithful mode of the file
        shuffled as a whole first, as the original shuffled every file it read (so chunks and their validation
        tails are the original's rows)."""
        size = self.config.distil_chunk_size
        if not self.config.faithful:
            return self.transfer.load_chunk(index, size)
        order = faithful_row_order(self.transfer.num_examples, self.config.seed)
        return self.transfer.load_rows(order[index * size:(index + 1) * size])

    def _teacher_outputs_fn(self):
        """One function object per teacher, so every chunk reuses the compiled predict step: a new closure per
        chunk retraced the teacher for each chunk and kept every trace (memory grew about 35 MB a chunk)."""
        teacher = self.teacher
        fns = self.__dict__.setdefault("_teacher_fns", {})
        if id(teacher) not in fns:
            with_rep = self.kind != "ner" and not self.config.multi_hidden

            def fn(batch):
                out = teacher(batch, training=False)
                result = {"logits": tf.cast(out["logits"], "float32")}
                if with_rep:
                    result["rep_0"] = tf.cast(out["sequence_output"][:, 0], "float32")
                return result

            fns[id(teacher)] = fn
        return fns[id(teacher)]

    # ------------------------------------------------------------------------------------------------ evaluation
    def evaluate(self, model, split: str) -> dict[str, float]:
        arrays = self.arrays[split]
        out = loop.predict(self.strategy, self._logits_fn(model), {k: arrays[k] for k in INPUTS}, self.gbs(self.config.teacher_batch_size),
                           trim=self.trim, token_outputs=("logits",) if self.kind == "ner" else ())
        names = self.label_names if self.kind == "ner" else self.task.label_names
        return score_logits(self.kind, out["logits"], arrays["labels"], label_names=names,
                            glue_task=self.task.glue_task)

    def _logits_fn(self, model):
        """The same function object per model, so its compiled predict step is reused."""
        fns = self.__dict__.setdefault("_logit_fns", {})
        if id(model) not in fns:
            fns[id(model)] = lambda b: {"logits": model(b, training=False)["logits"]}
        return fns[id(model)]

    def _dev_score(self, model):
        m = self.evaluate(model, "dev")
        return m[main_metric(self.kind, self.task.glue_task)], m

    # ------------------------------------------------------------------------------------------------ training
    def _train_epoch(self, step, model, data, gbs, stage_index, chunk, epoch, what) -> float:
        seed = unit_seed(self.config.seed, stage_index, chunk, epoch)
        reseed_dropout(model, seed)
        n = len(data["input_ids"])
        ds = loop.dataset_from_arrays(data, gbs, shuffle=True, seed=seed,
                                      drop_remainder=not self.config.faithful and n >= gbs, trim=self.trim,
                                      token_keys=self.token_keys,
                                      group_by_length=self.trim and self.config.grouped_batches)
        return loop.run_epoch(step, loop.distribute(self.strategy, ds),
                              description=f"{what} chunk {chunk} epoch {epoch + 1}", log_every=self.config.log_every)

    def stage_loss_fn(self, stage: Stage):
        c, student, teacher = self.config, self.student, self.teacher
        token_mask = self.kind == "ner" and not c.faithful
        online_teacher = stage.loss == "representation" and (self.kind == "ner" or c.multi_hidden)

        def loss_fn(batch, training):
            mask = batch["attention_mask"] if token_mask else None
            inputs = _inputs(batch)
            if stage.loss == "representation":
                out = student(inputs, training=training, with_representations=True,
                              output_attentions=c.distil_attention)
                if online_teacher:
                    t_out = teacher(inputs, training=False, output_attentions=c.distil_attention)
                    t_hidden = t_out["hidden_states"]
                    targets = [t_hidden[-1 - i] if self.kind == "ner" else t_hidden[-1 - i][:, 0]
                               for i in range(len(out["representations"]))]
                else:
                    targets = [batch["t_rep_0"]]
                total = 0.0
                for rep, target in zip(out["representations"], targets):
                    total += losses.mse(rep, tf.stop_gradient(target), mask)
                if c.distil_attention:
                    s_att, t_att = out["attentions"], t_out["attentions"]
                    for i in range(len(s_att)):
                        total += losses.attention_mse(s_att[-1 - i], tf.stop_gradient(t_att[-1 - i]), mask)
                return total
            out = student(inputs, training=training)
            if stage.loss == "logits":
                if c.logit_loss == "kl" and self.kind != "regression":
                    return losses.kl_divergence(out["logits"], batch["t_logits"], c.temperature, mask)
                return losses.mse(out["logits"], batch["t_logits"], mask)
            return losses.label_loss(self.kind, out["logits"], batch["labels"], mask)

        return loss_fn

    def stage_variables(self, stage: Stage) -> list:
        frozen = self.config.freeze_word_embedding
        out = []
        for group in stage.trainable:
            for v in self.student.group_variables(group, frozen_word_embeddings=frozen):
                if all(v is not o for o in out):
                    out.append(v)
        return out

    def run_stage(self, stage: Stage, carried):
        c = self.config
        student = self.student
        per_replica = c.student_ft_batch_size if stage.loss == "labels" else c.student_distil_batch_size
        gbs = self.gbs(per_replica)
        variables = self.stage_variables(stage)
        with self.strategy.scope():
            optimizer = loop.make_optimizer(c.student_lr, epsilon=1e-8)
            loop.build_optimizer(optimizer, variables, self.strategy)
        loss_fn = self.stage_loss_fn(stage)
        step = loop.Step(self.strategy, loss_fn, variables, optimizer, gbs, c.jit_compile)
        ckpt = PhaseCheckpoint(self._path("checkpoints", stage.name), student, optimizer)
        logging.info("%s (%d variables, %d parameters)", stage.describe(), len(variables),
                     sum(int(np.prod(v.shape)) for v in variables))

        sample = self._loss_sample(stage)
        val_fn = self._val_fn(loss_fn)
        pending = self.state.setdefault("loss_before", {})
        if str(stage.index) not in pending:
            pending[str(stage.index)] = self.eval_loss(val_fn, sample)
            self._save_state()

        if stage.loss == "labels":
            result = run_phase(stage.name, model=student, checkpoint=ckpt, num_chunks=1,
                               load_chunk=lambda _: self.arrays["train"],
                               train_epoch=lambda d, ch, ep: self._train_epoch(step, student, d, gbs, stage.index, ch,
                                                                               ep, stage.name),
                               score=lambda _: self._dev_score(student), epochs=c.ft_epochs, patience=c.patience,
                               faithful=c.faithful, cross_chunk=False)
            return result, pending[str(stage.index)], self.eval_loss(val_fn, sample)

        # Distillation on the transfer set, chunk by chunk; the faithful mode validates on each chunk's last 10%.
        use_dev = stage.loss == "logits" and not c.faithful

        def load_chunk(index):
            data = self.teacher_outputs(index)
            if use_dev:
                return {"train": data, "val": None}
            train, val = split_tail(data)
            return {"train": train, "val": val}

        def score(chunk_data):
            if use_dev:
                return self._dev_score(student)
            loss = self.eval_loss(val_fn, chunk_data["val"])
            return -loss, {"val_loss": loss}

        result = run_phase(stage.name, model=student, checkpoint=ckpt, num_chunks=self.num_chunks,
                           load_chunk=load_chunk,
                           train_epoch=lambda d, ch, ep: self._train_epoch(step, student, d["train"], gbs,
                                                                           stage.index, ch, ep, stage.name),
                           score=score, epochs=c.distil_epochs, patience=c.patience, faithful=c.faithful,
                           cross_chunk=True, carried=carried)
        return result, pending[str(stage.index)], self.eval_loss(val_fn, sample)

    def _val_fn(self, loss_fn):
        def val_fn(batch):
            return {"loss": loss_fn(batch, False)}
        return val_fn

    def _loss_sample(self, stage: Stage, size: int = 512) -> dict:
        """Up to `size` rows of the stage's own training data, to measure its loss before and after it."""
        data = self.arrays["train"] if stage.loss == "labels" else self.teacher_outputs(0)
        return {k: v[:size] for k, v in data.items()}

    def eval_loss(self, val_fn, arrays) -> float:
        # predict() cuts only the inputs' token axis, so NER targets (per token) need the full length.
        out = loop.predict(self.strategy, val_fn, arrays,
                           self.gbs(self.config.student_distil_batch_size), trim=self.trim and self.kind != "ner")
        return float(np.mean(out["loss"]))

    # ------------------------------------------------------------------------------------------------ the run
    def run(self) -> dict:
        self.setup()
        if self.state.get("finished"):
            logging.info("%s holds a finished run; nothing to do", self.model_dir)
            metrics = io.read_json(self._path(METRICS_FILE)) if os.path.isfile(self._path(METRICS_FILE)) else {}
            _log_summary(metrics)
            return metrics
        c = self.config
        self.load_data()
        self.prepare_teacher()
        if self.chief and not os.path.isfile(self._path(CONFIG_FILE)):
            io.write_json(self._path(CONFIG_FILE), {**c.to_json(), "teacher_hidden_size":
                                                    self.teacher.encoder.hidden_size,
                                                    "label_list": list(self.label_names or [])})
        self.prepare_student()
        self.run_stages()
        return self.finish()

    def _teacher_outputs_key(self) -> dict:
        """What cached teacher outputs depend on: the teacher's weights, the transfer set's content (the transfer
        cache's key: file fingerprint, tokenizer, seq_len), the row order and the chunking."""
        c = self.config
        return {"teacher": weights_id(os.path.join(self.teacher_dir, TEACHER_WEIGHTS)) if self.chief else "worker",
                "transfer": self.transfer.manifest["key"],
                "rows": f"shuffled with seed {c.seed}" if c.faithful else "file order",
                "chunk_size": c.distil_chunk_size, "multi_hidden": c.multi_hidden}

    def prepare_student(self):
        """The teacher-output cache, the student and the stage plan (after prepare_teacher)."""
        c = self.config
        self.teacher_cache = TeacherOutputCache(self._path("teacher_outputs"), self._teacher_outputs_key())
        num_labels = len(self.label_names) if self.label_names else 1
        with self.strategy.scope():
            self.student = build_student(c, vocab_size=len(self.tokenizer),
                                         num_labels=num_labels,
                                         teacher_hidden_size=self.teacher.encoder.hidden_size,
                                         teacher_word_embeddings=self.teacher_word_embeddings,
                                         pad_token_id=self.tokenizer.pad_token_id or 0)
        if c.pt_student_checkpoint:  # the teacher's tokenizer feeds the student too
            check_vocabulary(self.tokenizer, self.student.encoder.vocab_size, where=c.pt_student_checkpoint,
                             model="this student checkpoint (fed by the teacher's tokenizer)")
        self.plan = build_plan(faithful=c.faithful, num_layers=self.student.encoder.num_layers,
                               has_projection=bool(self.student.projections), unfreeze_order=c.unfreeze_order)
        logging.info("stage plan:\n%s", "\n".join("  " + s.describe() for s in self.plan))

    def run_stages(self):
        c = self.config
        done = self.state["stages"]
        last_done = max((int(k) for k in done), default=0)
        if last_done:
            PhaseCheckpoint(self._path("checkpoints", f"stage-{last_done}"), self.student, None).restore()
            logging.info("resuming after stage %d", last_done)
        for stage in self.plan:
            if str(stage.index) in done:
                continue
            carried = None
            prev = stage.index - 1
            first_of_kind = prev < 1 or self.plan[prev - 1].loss != stage.loss
            if c.faithful and stage.loss == "logits" and not first_of_kind and str(prev) in done:
                prev_ckpt = PhaseCheckpoint(self._path("checkpoints", f"stage-{prev}"), self.student, None)
                _, snaps = _read_snapshots(prev_ckpt)
                if snaps.get("phase_best") is not None:
                    carried = (done[str(prev)]["phase_best"], snaps["phase_best"])
            t0 = time.time()
            result, loss_before, loss_after = self.run_stage(stage, carried)
            record = {"loss": stage.loss, "trainable": list(stage.trainable), "wall_time": result.wall_time,
                      "phase_best": result.best_score, "history": result.history,
                      "train_loss_before": loss_before, "train_loss_after": loss_after}
            if stage.loss != "representation":
                for split in ("dev", "test"):
                    if split in self.arrays:
                        record[split] = self.evaluate(self.student, split)
                self._select(stage, record)
            logging.info("%s done in %.1f s: %s", stage.name, time.time() - t0,
                         {k: v for k, v in record.items() if k in ("dev", "test")})
            done[str(stage.index)] = record
            self._save_state()
            self._prune_checkpoints(stage.index)

    def _select(self, stage: Stage, record: dict):
        """Keeps the best stage's weights: by test score in faithful mode (ties to the later stage, as the
        original), by dev score otherwise."""
        c = self.config
        metric = main_metric(self.kind, self.task.glue_task)
        split = "test" if c.faithful and "test" in record else "dev"
        value = record[split][metric]
        best = self.state.get("selected")
        better = best is None or (value >= best["score"] if c.faithful else value > best["score"])
        if better:
            self.state["selected"] = {"stage": stage.index, "split": split, "metric": metric, "score": value}
            # Every worker keeps its own copy (non-chief workers in a temporary folder): all of them finish.
            with io.atomic_path(self._path("checkpoints", "selected.npz")) as tmp, open(tmp, "wb") as f:
                np.savez(f, *get_weights(self.student))

    def _prune_checkpoints(self, finished: int):
        if not self.chief or self.config.keep_checkpoints:
            return
        for s in self.plan:
            if s.index < finished:
                shutil.rmtree(self._path("checkpoints", s.name), ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ outputs
    def finish(self) -> dict:
        c = self.config
        selected = self.state["selected"]
        with np.load(self._path("checkpoints", "selected.npz")) as data:
            set_weights(self.student, [data[f"arr_{i}"] for i in range(len(data.files))])
        final = {split: self.evaluate(self.student, split) for split in ("dev", "test") if split in self.arrays}
        metrics = {"teacher": self.state["teacher"], "selected_stage": selected, "final": final,
                   "stages": {k: {kk: vv for kk, vv in v.items() if kk != "history"}
                              for k, v in self.state["stages"].items()},
                   "histories": {k: v["history"] for k, v in self.state["stages"].items()},
                   "mode": c.mode, "wall_time_total": sum(v["wall_time"] for v in self.state["stages"].values())}
        if self.chief:
            self.write_outputs(metrics)
            self.state["finished"] = True
            self._save_state()
        _log_summary(metrics)
        return metrics

    def write_outputs(self, metrics: dict):
        c = self.config
        student = self.student
        save_model(student, self.model_dir, "xtremedistil.weights.h5", "student-config.json",
                   extra={"label_names": self.label_names, "kind": self.kind})
        io.save_npy(self._path("word_embedding.npy"), student.encoder.embeddings.word_embeddings.embeddings.numpy())
        io.write_json(self._path(METRICS_FILE), metrics)
        try:
            from xtremedistil_tf.distill.plots import plot_run
            plot_run(metrics, self._path("plots"))
        except Exception as e:  # noqa: BLE001 - plots are a convenience, never a failure
            logging.warning("plots not written: %s", e)
        task_model = student.to_task_model()
        if c.export_hf:
            from xtremedistil_tf.convert.export import export_hf
            names = self.label_names if self.kind != "regression" else None
            export_hf(task_model, self._path("hf"), tokenizer=self.tokenizer, label_names=names)
        if c.export_saved_model:
            from xtremedistil_tf.convert.export import export_saved_model
            export_saved_model(task_model, self._path("saved_model"))
        logging.info("outputs written to %s", self.model_dir)


def _read_snapshots(ckpt: PhaseCheckpoint):
    if not ckpt.exists():
        return {}, {}
    return ckpt.restore()


def _inputs(batch):
    return {k: batch[k] for k in INPUTS}


def _transfer_line(example: Example) -> str:
    text = " ".join(example.text_a) if isinstance(example.text_a, tuple) else example.text_a
    return f"{text}\t{example.text_b}\n" if example.text_b is not None else f"{text}\n"


def _log_summary(metrics: dict):
    if not metrics:
        return
    logging.info("teacher: %s", metrics.get("teacher"))
    for k, v in sorted(metrics.get("stages", {}).items(), key=lambda kv: int(kv[0])):
        logging.info("stage %s (%s, %s): %.1f s, dev %s, test %s", k, v["loss"], "+".join(v["trainable"]),
                     v["wall_time"], v.get("dev"), v.get("test"))
    logging.info("selected: %s; final: %s", metrics.get("selected_stage"), metrics.get("final"))


def run_distillation(config: DistilConfig) -> dict:
    return Distillation(config).run()
