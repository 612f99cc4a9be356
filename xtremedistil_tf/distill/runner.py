"""Orders one distillation run: data, teacher, teacher outputs, the stage plan, resume, outputs.

Every piece of progress is checkpointed in model_dir (atomically), so rerunning the same command after a crash
continues where it stopped, and a finished run only reports. What differs between modes comes from the config's
policy; the losses of each stage come from the plan; training is the shared `train.trainer.Trainer`.
"""
from __future__ import annotations

import tempfile
import time
import types

import numpy as np
from absl import logging

from xtremedistil_tf import fs, io
from xtremedistil_tf.convert.hf import load_hf_head, read_word_embeddings
from xtremedistil_tf.data.tasks import load_task
from xtremedistil_tf.data.tokenize import check_vocabulary, load_tokenizer
from xtremedistil_tf.distill import outputs
from xtremedistil_tf.distill.config import DistilConfig, SourceTask
from xtremedistil_tf.distill.data import DistillationData, split_tail
from xtremedistil_tf.distill.deployment import deploy
from xtremedistil_tf.distill.distiller import Distiller
from xtremedistil_tf.distill.plan import Stage, build_plan, relation_loss, stage_losses
from xtremedistil_tf.distill.run_folder import METRICS_FILE, RunFolder
from xtremedistil_tf.distill.student import build_student
from xtremedistil_tf.distill.teacher import (
    TEACHER_CONFIG,
    TEACHER_WEIGHTS,
    TeacherOutputCache,
    TeacherOutputs,
    build_teacher,
    has_saved_teacher,
    weights_id,
)
from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.metrics import main_metric, score_logits, score_ner_like_original
from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.models.heads import TOKEN_KINDS
from xtremedistil_tf.models.saving import load_model, save_model
from xtremedistil_tf.progress import make_progress
from xtremedistil_tf.train import loop
from xtremedistil_tf.train.checkpoint import PhaseCheckpoint
from xtremedistil_tf.train.losses import LabelLoss
from xtremedistil_tf.train.schedules import warmup_linear_decay
from xtremedistil_tf.train.tensorboard import NoRecorder, Recorder, run_recorder, verbatim
from xtremedistil_tf.train.trainer import Batching, LossModel, Trainer, unique_variables


class Distillation:
    """One run of run_distillation.py."""

    def __init__(self, config: DistilConfig):
        self.config = config
        self.policy = config.policy
        self.t_start = time.time()
        self._logit_fns: dict = {}
        self._eval_fns: dict = {}
        self.recorder: Recorder = NoRecorder()

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self, runtime: tuple | None = None):
        """Validates flags and paths, sets up the runtime (or takes another run's: (strategy, chief, trim)) and the
        run folder, checks a rerun's flags and the teacher's shapes (cheap checks first, before any data or weights
        load), and loads the progress state."""
        c = self.config
        c.validate_flags()
        c.validate_paths()
        self.strategy, self.chief, self.trim = runtime or c.set_up()
        self.replicas = self.strategy.num_replicas_in_sync
        model_dir = c.model_dir if self.chief else tempfile.mkdtemp(prefix="xtremedistil-worker-")
        self.folder = RunFolder(model_dir, chief=self.chief)
        self.teacher_dir = (c.teacher_model_dir or fs.join(c.model_dir, "teacher")) if self.chief \
            else fs.join(model_dir, "teacher")
        # TensorBoard: opened at the first summary, so a finished run rerun writes nothing.
        self.recorder = run_recorder(c.model_dir, c, chief=self.chief)
        self.trainer = Trainer(self.strategy, seed=c.seed, jit_compile=c.jit_compile,
                               steps_per_execution=c.steps_per_execution, log_every=c.log_every,
                               progress=c.progress, recorder=self.recorder)
        self._student_from_checkpoint()
        self.folder.check_config(c)
        self._preflight_teacher()
        logging.info("configuration:\n%s", "\n".join(f"  {k} = {v}" for k, v in sorted(c.to_json().items())))
        self.state = self.folder.load_state()

    def _path(self, *parts) -> str:
        return self.folder.path(*parts)

    def _student_from_checkpoint(self):
        """As the original, a --pt_student_checkpoint's own shapes replace --hidden_size, --num_hidden_layers and
        --num_attention_heads (in the config and in xtremedistil-config.json)."""
        from xtremedistil_tf.convert.hf import (
            encoder_kwargs_from_hf,
            read_hf_config,
            resolve_source,
        )
        c = self.config
        if not c.pt_student_checkpoint:
            return
        folder = resolve_source(c.pt_student_checkpoint)
        kw = encoder_kwargs_from_hf(read_hf_config(folder), source=fs.join(folder, "config.json"))
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
        if student and fs.isdir(student):
            kw = encoder_kwargs_from_hf(read_hf_config(student), source=fs.join(student, "config.json"))
            if kw["architecture"] != "bert":
                raise ConfigError(f"--pt_student_checkpoint={student}: the student must be a BERT model, found "
                                  f"{kw['architecture']}")
            self._student_vocab = kw["vocab_size"]
        folder = c.pt_teacher_checkpoint
        if has_saved_teacher(self.teacher_dir) or not fs.isdir(folder):
            return
        kw = encoder_kwargs_from_hf(read_hf_config(folder), source=fs.join(folder, "config.json"))
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
        self.folder.save_state(self.state)

    # ------------------------------------------------------------------------------------------------ data
    def load_data(self):
        """Loads the teacher's tokenizer (checked against teacher and student vocabularies), the task and the
        featurized labelled and transfer data."""
        c = self.config
        self.tokenizer = load_tokenizer(c.pt_teacher_checkpoint)
        if getattr(self, "_teacher_spec", None) is not None:
            self._validate_teacher(self._teacher_spec)
        if getattr(self, "_student_vocab", None) is not None:
            check_vocabulary(self.tokenizer, self._student_vocab, where=c.pt_student_checkpoint,
                             model="this student checkpoint (fed by the teacher's tokenizer)")
        self.task = None if c.task_agnostic else load_task(c.task, do_NER=c.do_NER, do_pairwise=c.do_pairwise,
                                                           glue_task=c.glue_task, do_QA=c.do_QA,
                                                           tfds_data_dir=c.tfds_data_dir or None)
        self.data = DistillationData(c, self.task, self.tokenizer, self.folder)
        self.kind = self.data.kind
        self.label_names = self.data.label_names
        self.arrays = self.data.arrays
        self.num_chunks = self.data.num_chunks
        self.token_mask = c.token_representations and self.policy.mask_padding
        if self.kind == "ner" and self.policy.ner_full_length and self.trim:
            self.trim = False
            logging.info("NER batches and predictions at the full %d tokens (pads trained on and scored, as the "
                         "original)", c.seq_len)

    def gbs(self, per_replica: int) -> int:
        """The global batch size: the flags give per-replica sizes, as the original's batch_size x GPUs."""
        return per_replica * self.replicas

    def batching(self, per_replica: int) -> Batching:
        """How this run draws training batches of `per_replica` examples a replica."""
        return Batching(self.gbs(per_replica), token_keys=self.data.token_keys, trim=self.trim,
                        group_by_length=self.config.grouped_batches, drop_partial=self.policy.drop_partial_batch,
                        mean_over_real_size=self.policy.mean_over_real_batch)

    # ------------------------------------------------------------------------------------------------ teacher
    def prepare_teacher(self):
        """Reloads the saved teacher, or builds it and fine-tunes it (or takes the checkpoint's head with
        --teacher_is_finetuned) and saves it; then scores it on dev/test once, for the report."""
        c = self.config
        if c.task_agnostic:
            return self._prepare_pretrained_teacher()
        with self.strategy.scope():
            before_fine_tuning = None
            if has_saved_teacher(self.teacher_dir):
                logging.info("loading the fine-tuned teacher from %s", self.teacher_dir)
                self.teacher = load_model(self.teacher_dir, TEACHER_WEIGHTS, TEACHER_CONFIG)
            else:
                teacher, loaded = build_teacher(c.pt_teacher_checkpoint, num_labels=self.task.num_labels
                                                if self.kind != "ner" else len(self.label_names),
                                                kind=self.kind, first_token_head=self.policy.teacher_first_token_head)
                self.teacher = teacher
                if self._compresses_checkpoint_embeddings:
                    before_fine_tuning = _word_embeddings(teacher)
                self._validate_teacher(teacher.encoder)  # before fine-tuning, not an hour into it
                if c.teacher_is_finetuned:
                    if not load_hf_head(teacher, loaded.heads, source=c.pt_teacher_checkpoint):
                        raise ConfigError(f"--teacher_is_finetuned: {c.pt_teacher_checkpoint} has no task head "
                                          "of this task's shape")
                else:
                    self._fine_tune_teacher()
                if self.chief:
                    save_model(self.teacher, self.teacher_dir, TEACHER_WEIGHTS, TEACHER_CONFIG)
                    # Only now: a crash before the teacher is saved resumes its fine-tuning from this checkpoint.
                    fs.rmtree(fs.join(self.teacher_dir, "checkpoint"))
            self.teacher_word_embeddings = self._embeddings_to_compress(before_fine_tuning)
        self._validate_teacher(self.teacher.encoder)
        if self.state.get("teacher") is None:
            self.state["teacher"] = self.scores(self.teacher)
            self._save_state()
            for split, m in self.state["teacher"].items():
                self.recorder.scalars(f"teacher/final/{split}", m, step=0)
        logging.info("teacher: %s", self.state["teacher"])

    @property
    def _compresses_checkpoint_embeddings(self) -> bool:
        """Whether the student's compressed word embeddings come from the teacher checkpoint's matrix (before
        fine-tuning, the default mode's rule) rather than from the fine-tuned teacher's."""
        c = self.config
        return c.word_embeddings_compressed and not (self.policy.compresses_fine_tuned_teacher
                                                     or c.teacher_is_finetuned)

    def _embeddings_to_compress(self, before_fine_tuning: np.ndarray | None) -> np.ndarray | None:
        """The teacher word embeddings whose PCA starts the student's (None when the student does not take them):
        the checkpoint's (`before_fine_tuning`) or, by the mode's policy, the fine-tuned teacher's. A reloaded
        teacher (a resumed run, a shared --teacher_model_dir) has only its fine-tuned ones, so the checkpoint's
        are read from --pt_teacher_checkpoint again: the student then starts as in an uninterrupted run."""
        c = self.config
        if self._compresses_checkpoint_embeddings:
            if before_fine_tuning is None:
                logging.info("reading the word embeddings to compress from %s (before fine-tuning)",
                             c.pt_teacher_checkpoint)
                before_fine_tuning = read_word_embeddings(c.pt_teacher_checkpoint)
            return before_fine_tuning
        return _word_embeddings(self.teacher) if c.word_embeddings_compressed else None

    def _prepare_pretrained_teacher(self):
        """A task-agnostic run's teacher: the checkpoint as it is (its head, never trained, is not used)."""
        c = self.config
        with self.strategy.scope():
            self.teacher, _ = build_teacher(c.pt_teacher_checkpoint, num_labels=1, kind="classification",
                                            first_token_head=self.policy.teacher_first_token_head)
        self.teacher_word_embeddings = _word_embeddings(self.teacher) if c.word_embeddings_compressed else None
        self._validate_teacher(self.teacher.encoder)
        self.state["teacher"] = self.state.get("teacher") or {}

    def _fine_tune_teacher(self):
        c, teacher = self.config, self.teacher
        variables = teacher.trainable_variables
        batching = self.batching(c.teacher_batch_size)
        peak = c.teacher_learning_rate or self.policy.teacher_learning_rate(self.kind)
        total = batching.steps(len(self.arrays["train"]["input_ids"])) * c.ft_epochs
        warmup = self.policy.teacher_warmup(self.kind)
        lr = peak if warmup is None else warmup_linear_decay(peak, int(round(warmup * total)), total)
        optimizer = loop.make_optimizer(lr, epsilon=1e-8)
        model = LossModel(teacher, [LabelLoss(self.kind)], token_mask=self.token_mask)
        logging.info("fine-tuning the teacher on %d examples, up to %d epochs, learning rate %g (%s)",
                     len(self.arrays["train"]["input_ids"]), c.ft_epochs, peak,
                     "constant" if warmup is None else f"warm-up over {warmup:.0%} of {total} steps, linear decay")
        self.trainer.fit("teacher", model, variables=variables, optimizer=optimizer,
                         batching=batching, checkpoint_dir=fs.join(self.teacher_dir, "checkpoint"),
                         load_chunk=lambda _: {"train": self.arrays["train"]},
                         score=lambda _: self._dev_score(teacher), epochs=c.ft_epochs, patience=c.patience,
                         rule=self.policy.stopping_rule)

    def teacher_outputs(self, index: int) -> dict[str, np.ndarray]:
        """Transfer chunk `index` with the teacher's logits (and first-token representation), cached."""
        return self._teacher_outputs.for_chunk(index, self.data.transfer_chunk(index))

    def _teacher_outputs_key(self, with_representation: bool = True) -> dict:
        """What cached teacher outputs depend on: the teacher's weights, the transfer set's content (the transfer
        cache's key: file fingerprint, tokenizer, seq_len), the row order, the chunking and whether the first-token
        representation is stored."""
        c = self.config
        return {"teacher": weights_id(fs.join(self.teacher_dir, TEACHER_WEIGHTS)) if self.chief else "worker",
                "transfer": self.data.transfer.manifest["key"], "rows": self.data.row_order,
                "chunk_size": c.distil_chunk_size, "multi_hidden": c.multi_hidden,
                "rep_0": with_representation,
                # Trimmed predictions pad token logits with zeros; untrimmed ones hold the teacher's at pads.
                **({"untrimmed": True} if self.kind in TOKEN_KINDS and not self.trim else {})}

    # ------------------------------------------------------------------------------------------------ evaluation
    def _progress(self):
        return make_progress(self.config.progress, log_every=self.config.log_every)

    def _predict(self, fn, arrays, token_outputs=(), description="teacher outputs"):
        return loop.predict(self.strategy, fn, arrays, self.gbs(self.config.teacher_batch_size), trim=self.trim,
                            token_outputs=token_outputs, progress=self._progress(), jit_compile=self.config.jit_compile,
                            description=f"{description} ({len(arrays['input_ids'])} examples)")

    def evaluate(self, model, split: str) -> dict[str, float]:
        """`model`'s (teacher or student) metrics on a labelled split."""
        arrays = self.arrays[split]
        out = self._predict(self._logits_fn(model), {k: arrays[k] for k in INPUT_NAMES},
                            ("logits",) if self.kind in TOKEN_KINDS else (), description=f"evaluating {split}")
        return self.score(split, out["logits"])

    def score(self, split: str, logits: np.ndarray) -> dict[str, float]:
        """The metrics of `logits` (any model's, any runtime's) on a labelled split."""
        if self.kind == "qa":
            from xtremedistil_tf.metrics.scoring import score_spans
            c = self.config
            return score_spans(self.task.splits[split], self.data.qa_features[split], logits,
                               version_2=self.task.glue_task == "squad_v2", n_best_size=c.n_best_size,
                               max_answer_length=c.max_answer_length)[0]
        if self.kind == "ner" and self.policy.ner_original_evaluation:
            return score_ner_like_original(logits, self.arrays[split]["labels"], self.label_names,
                                           self.data.special_tokens)
        names = self.label_names if self.kind == "ner" else self.task.label_names
        return score_logits(self.kind, logits, self.arrays[split]["labels"], label_names=names,
                            glue_task=self.task.glue_task)

    def _logits_fn(self, model):
        """The same function object per model, so its compiled predict step is reused."""
        if id(model) not in self._logit_fns:
            self._logit_fns[id(model)] = lambda b: {"logits": model(b, training=False)["logits"]}
        return self._logit_fns[id(model)]

    def scores(self, model) -> dict[str, dict[str, float]]:
        """`model`'s (this run's teacher or student) metrics on each labelled split."""
        return {split: self.evaluate(model, split) for split in ("dev", "test") if split in self.arrays}

    def selection_metric(self) -> str:
        """The dev metric that selects the stage whose weights are kept."""
        return main_metric(self.kind, self.task.glue_task)

    @property
    def checkpointed(self):
        """The model whose weights stage checkpoints and the selected weights hold: the student."""
        return self.student

    def stopping_metric(self) -> str:
        """The dev metric that stops training: the policy's, from the task's main metric."""
        return self.policy.stopping_metric(self.kind, main_metric(self.kind, self.task.glue_task))

    def _dev_score(self, model):
        """The dev score that stops training (`stopping_metric`) and every dev metric."""
        m = self.evaluate(model, "dev")
        return m[self.stopping_metric()], m

    def eval_loss(self, distiller: Distiller, arrays) -> float:
        """The mean per-example loss of `distiller`'s stage over `arrays` (inference mode)."""
        # predict() cuts only the inputs' token axis, so NER targets (per token) need the full length.
        out = loop.predict(self.strategy, distiller.eval_fn, arrays, self.gbs(self.config.student_distil_batch_size),
                           trim=self.trim and self.kind not in TOKEN_KINDS, progress=self._progress(),
                           jit_compile=self.config.jit_compile,
                           description=f"stage loss ({len(arrays['input_ids'])} examples)")
        return float(np.mean(out["loss"]))

    # ------------------------------------------------------------------------------------------------ the student
    def prepare_student(self, encoder=None):
        """The teacher-output cache, the student and the stage plan (after prepare_teacher); `encoder`: another
        run's student encoder, which this student shares (several source tasks)."""
        c = self.config
        num_labels = len(self.label_names) if self.label_names else 1
        with self.strategy.scope():
            self.student = build_student(c, vocab_size=len(self.tokenizer), num_labels=num_labels,
                                         teacher_hidden_size=self.teacher.encoder.hidden_size,
                                         teacher_word_embeddings=self.teacher_word_embeddings,
                                         pad_token_id=self.tokenizer.pad_token_id or 0,
                                         teacher_encoder=self.teacher.encoder, encoder=encoder)
        if c.pt_student_checkpoint:  # the teacher's tokenizer feeds the student too
            check_vocabulary(self.tokenizer, self.student.encoder.vocab_size, where=c.pt_student_checkpoint,
                             model="this student checkpoint (fed by the teacher's tokenizer)")
        has_projection = bool(self.student.projections)
        groups = self.policy.unfreeze_groups(num_layers=self.student.encoder.num_layers,
                                             has_projection=has_projection,
                                             unfreeze_order=c.resolved_unfreeze_order)
        relation = relation_loss(c.relation_loss, relation_heads=c.relation_heads or self.student.encoder.num_heads,
                                 teacher_layer=c.relation_teacher_layer)
        self.plan = build_plan(groups, has_projection=has_projection, representation_only=c.task_agnostic,
                               losses=stage_losses(kind=self.kind, multi_hidden=c.multi_hidden,
                                                   distil_attention=c.distil_attention, logit_loss=c.logit_loss,
                                                   temperature=c.temperature, token_level=c.token_representations,
                                                   hidden_loss=c.hidden_loss, relation=relation,
                                                   online=self.data.augmentation is not None))
        logging.info("stage plan (%s mode):\n%s", self.policy.name,
                     "\n".join("  " + s.describe() for s in self.plan))
        self.recorder.text("stage_plan", verbatim(f"{self.policy.name} mode\n" +
                                                  "\n".join(s.describe() for s in self.plan)))
        # The representation stage reads the teacher's first-token representation from the cache unless it runs
        # the teacher on every batch.
        with_representation = self.plan[0].reads_teacher_cache
        self.teacher_cache = self._teacher_outputs = None
        if any(stage.reads_teacher_cache for stage in self.plan):  # not in a task-agnostic run
            self.teacher_cache = TeacherOutputCache(self._path("teacher_outputs"),
                                                    self._teacher_outputs_key(with_representation))
            self._teacher_outputs = TeacherOutputs(self.teacher, self.teacher_cache, self._predict,
                                                   with_representation=with_representation,
                                                   token_level=self.kind in TOKEN_KINDS)

    def stage_variables(self, stage: Stage) -> list:
        """The student variables the stage trains: its groups' variables, each once (frozen word embeddings left
        out with --freeze_word_embedding)."""
        frozen = self.config.word_embeddings_frozen
        return unique_variables(v for group in stage.trainable
                                for v in self.student.group_variables(group, frozen_word_embeddings=frozen))

    def distiller(self, stage: Stage) -> Distiller:
        """The Distiller of one stage. Its evaluation function (the per-example loss, which does not depend on what
        trains) is one object for every stage with the same losses (each logit stage, each label stage), so their
        loss evaluations share one compiled predict step instead of tracing one per stage."""
        distiller = Distiller(self.student, self.teacher, stage.losses, token_mask=self.token_mask)
        distiller.eval_fn = self._eval_fns.setdefault(stage.losses, distiller.test_step)
        return distiller

    @property
    def runs(self) -> list["Distillation"]:
        """Every source's run, this one first: this one alone unless several source tasks train together."""
        return [self]

    @staticmethod
    def source_name(run: "Distillation") -> str:
        """A source's name in metrics: its task folder's name."""
        return SourceTask(run.config.task).name

    def run_stage(self, stage: Stage, carried):
        """Trains one stage with a fresh optimizer: label stages on train, the others chunk by chunk on the transfer
        set; with several sources (`runs`), on every source's batches, interleaved, through one optimizer.
        `carried` is _carried's result. Returns (fit result, sample loss before, sample loss after), the loss
        averaged over the sources."""
        c = self.config
        runs = self.runs
        several = len(runs) > 1

        def each(items: list):  # one source trains through Trainer.fit's one-model path
            return items if several else items[0]

        stages = [r.plan[stage.index - 1] for r in runs]
        variables = [r.stage_variables(s) for r, s in zip(runs, stages)]
        with self.strategy.scope():
            optimizer = loop.make_optimizer(c.student_lr, epsilon=1e-8)
        distillers = [r.distiller(s) for r, s in zip(runs, stages)]
        trained = unique_variables(v for group in variables for v in group)
        logging.info("%s (%d variables, %d parameters)%s", stage.describe(), len(trained),
                     sum(int(np.prod(v.shape)) for v in trained),
                     f" on {len(runs)} sources, interleaved" if several else "")

        samples = [r._loss_sample(s) for r, s in zip(runs, stages)]

        def sample_loss():
            return float(np.mean([r.eval_loss(d, x) for r, d, x in zip(runs, distillers, samples)]))

        pending = self.state.setdefault("loss_before", {})
        if str(stage.index) not in pending:
            pending[str(stage.index)] = sample_loss()
            self._save_state()

        common = dict(variables=each(variables), optimizer=optimizer,
                      checkpoint_dir=self.folder.stage_checkpoint(stage.name), patience=c.patience,
                      rule=self.policy.stopping_rule, stream=stage.index, weights=self.checkpointed)
        if stage.loss == "labels":
            result = self.trainer.fit(stage.name, each(distillers),
                                      batching=each([r.batching(c.student_ft_batch_size) for r in runs]),
                                      load_chunk=lambda _: {"train": each([r.arrays["train"] for r in runs])},
                                      score=lambda _: self._stage_dev_score(), epochs=c.ft_epochs, **common)
            return result, pending[str(stage.index)], sample_loss()

        # Distillation on the transfer set (and the augmentation corpus), chunk by chunk; validated on the dev
        # score (logit stages, where the policy says so) or on held-out teacher agreement: a chunk's last 10%, or
        # one fixed set where chunks' losses must compare (see `_fixed_validation`).
        use_dev = stage.loss == "logits" and self.policy.logits_validated_on_dev
        cut = self.policy.validation_cut
        fixed = [None if use_dev else r._fixed_validation(s, first_chunk=several) for r, s in zip(runs, stages)]

        def load_chunk(index):
            trains, vals = [], []
            for r, s, f in zip(runs, stages, fixed):
                if index >= r.num_stage_chunks(s):  # a source with fewer chunks sits the rest out
                    trains.append(None)
                    vals.append(f)
                    continue
                data = r.stage_chunk(s, index)
                if use_dev:
                    trains.append(data)
                    vals.append(None)
                    continue
                train, val = split_tail(data, cut(len(data["input_ids"])))
                trains.append(train)
                vals.append(val if f is None else f)
            return {"train": each(trains), "val": vals}

        def score(chunk_data):
            if use_dev:
                return self._stage_dev_score()
            losses = {self.source_name(r): r.eval_loss(d, v) for r, d, v in zip(runs, distillers, chunk_data["val"])}
            mean = float(np.mean(list(losses.values())))
            per_source = {f"{name}/val_loss": v for name, v in losses.items()} if several else {}
            return -mean, {"val_loss": mean, **per_source}

        result = self.trainer.fit(stage.name, each(distillers),
                                  batching=each([r.batching(c.student_distil_batch_size) for r in runs]),
                                  load_chunk=load_chunk, score=score, epochs=c.distil_epochs,
                                  num_chunks=max(r.num_stage_chunks(s) for r, s in zip(runs, stages)),
                                  cross_chunk=True, carried=carried, **common)
        return result, pending[str(stage.index)], sample_loss()

    def _stage_dev_score(self):
        """The dev score that stops a stage, and the dev metrics: the student's (see `_dev_score`)."""
        return self._dev_score(self.student)

    def _fixed_validation(self, stage: Stage, *, first_chunk: bool) -> dict[str, np.ndarray] | None:
        """The one validation set every chunk of a distillation stage is scored on, or None to score each chunk on
        its own tail. With an augmentation corpus the representation stage's chunks come from different texts,
        whose losses do not compare: the tails of the first transfer and corpus chunks. With `first_chunk` (several
        sources, whose means over chunks must compare too), the first chunk's tail otherwise."""
        if stage.loss == "representation" and self.data.augmentation:
            return self._mixed_validation()
        if first_chunk:
            first = self.stage_chunk(stage, 0)
            return split_tail(first, self.policy.validation_cut(len(first["input_ids"])))[1]
        return None

    def _mixed_validation(self) -> dict[str, np.ndarray]:
        """The held-out tails of the first transfer chunk and the first augmentation chunk, as one set."""
        chunks = [self.data.representation_chunk(i) for i in (0, self.num_chunks)]
        parts = [split_tail(c, self.policy.validation_cut(len(c["input_ids"])))[1] for c in chunks]
        width = max(p["input_ids"].shape[1] for p in parts)
        return {k: np.concatenate([np.pad(p[k], [(0, 0), (0, width - p[k].shape[1])]) for p in parts])
                for k in INPUT_NAMES}

    def num_stage_chunks(self, stage: Stage) -> int:
        """Chunks a distillation stage trains on: the representation stage also reads the augmentation corpus."""
        return self.data.num_representation_chunks if stage.loss == "representation" else self.num_chunks

    def stage_chunk(self, stage: Stage, index: int) -> dict[str, np.ndarray]:
        """Chunk `index` of a distillation stage, with the teacher's cached outputs where its losses read them."""
        if stage.reads_teacher_cache:
            return self.teacher_outputs(index)
        return self.data.representation_chunk(index)  # transfer chunks first, then the augmentation corpus

    def _loss_sample(self, stage: Stage, size: int = 512) -> dict:
        """Up to `size` rows of the stage's own training data, to measure its loss before and after it."""
        data = self.arrays["train"] if stage.loss == "labels" else self.stage_chunk(stage, 0)
        return {k: v[:size] for k, v in data.items()}

    # ------------------------------------------------------------------------------------------------ the run
    def run(self) -> dict:
        """The whole run, resuming from model_dir's state; a finished run only reports its saved metrics. The
        TensorBoard events are flushed and closed at the end, also when the run fails."""
        try:
            return self._run()
        finally:
            self.recorder.close()

    def _run(self) -> dict:
        self.setup()
        if self.state.get("finished"):
            logging.info("%s holds a finished run; nothing to do", self.folder.folder)
            metrics = self.folder.read_metrics()
            outputs.log_summary(metrics)
            return metrics
        self.recorder.record_config(self.config.to_json())
        self.load_data()
        self.prepare_teacher()
        self.folder.save_config(self.config, teacher_hidden_size=self.teacher.encoder.hidden_size,
                                label_list=list(self.label_names or []))
        self.prepare_student()
        self.run_stages()
        return self.finish()

    def _carried(self, stage: Stage):
        """The previous logit stage's best validation score and weights, where the policy carries them over."""
        done = self.state["stages"]
        prev = stage.index - 1
        first_of_kind = prev < 1 or self.plan[prev - 1].loss != stage.loss
        if not (self.policy.carry_best_across_logit_stages and stage.loss == "logits" and not first_of_kind
                and str(prev) in done):
            return None
        ckpt = PhaseCheckpoint(self.folder.stage_checkpoint(f"stage-{prev}"), self.checkpointed, None)
        snaps = ckpt.restore()[1] if ckpt.exists() else {}
        if snaps.get("phase_best") is None:
            return None
        return done[str(prev)]["phase_best"], snaps["phase_best"]

    def run_stages(self):
        """Runs the plan's unfinished stages in order, after restoring the last finished one's weights; records each
        stage's scores, updates the selected stage and saves the state after every stage."""
        done = self.state["stages"]
        last_done = max((int(k) for k in done), default=0)
        self.recorder.step = 0  # the stages' curves on one axis, the teacher's on its own
        if last_done:
            saved, _ = PhaseCheckpoint(self.folder.stage_checkpoint(f"stage-{last_done}"), self.checkpointed,
                                       None).restore()
            self.recorder.step = saved.get("global_step", 0)
            logging.info("resuming after stage %d", last_done)
        for stage in self.plan:
            if str(stage.index) in done:
                continue
            carried = self._carried(stage)
            t0 = time.time()
            result, loss_before, loss_after = self.run_stage(stage, carried)
            record = {"loss": stage.loss, "trainable": list(stage.trainable), "wall_time": result.wall_time,
                      "phase_best": result.best_score, "history": result.history,
                      "train_loss_before": loss_before, "train_loss_after": loss_after}
            if stage.loss != "representation":
                record.update(self.scores(self.student))
                self._select(stage, record)
            logging.info("%s done in %.1f s: %s", stage.name, time.time() - t0,
                         {k: v for k, v in record.items() if k in ("dev", "test")})
            for split in ("dev", "test"):
                if split in record:
                    self.recorder.scalars(f"student/{split}", record[split], step=stage.index)
            self.recorder.flush()
            done[str(stage.index)] = record
            self._save_state()
            if not self.config.keep_checkpoints:
                self.folder.prune_checkpoints([s.name for s in self.plan if s.index < stage.index])

    def _select(self, stage: Stage, record: dict):
        """Keeps the best stage's weights, by the policy's split and tie rule."""
        metric = self.selection_metric()
        split = self.policy.selection_split_of(record)
        value = record[split][metric]
        best = self.state.get("selected")
        if self.policy.selection_better(value, None if best is None else best["score"]):
            self.state["selected"] = {"stage": stage.index, "split": split, "metric": metric, "score": value}
            self.folder.save_selected(self.checkpointed)

    # ------------------------------------------------------------------------------------------------ outputs
    def finish(self) -> dict:
        """Restores the selected stage's weights, scores them, writes the outputs and marks the run finished;
        returns the run's metrics."""
        c = self.config
        if self.state.get("selected") is not None:
            self.folder.load_selected(self.checkpointed)
        final = self.scores(self.student)
        for split, m in final.items():
            self.recorder.scalars(f"student/final/{split}", m, step=len(self.plan))
        metrics = outputs.run_metrics(self.state, final, c.mode)
        if self.chief:
            if c.task_agnostic:
                outputs.write_metrics(self.folder, metrics)
            else:
                outputs.write_outputs(self.folder, self.student, metrics, label_names=self.label_names,
                                      kind=self.kind, tokenizer=self.tokenizer, export_hf=c.export_hf,
                                      export_saved_model=c.export_saved_model)
            if c.writes_encoder:
                outputs.write_encoder(self.folder, self.student.encoder, tokenizer=self.tokenizer,
                                      export_saved_model=c.export_saved_model)
            if c.deploys_student:
                deploy(self, metrics)
                io.write_json(self.folder.path(METRICS_FILE), metrics)
            self.state["finished"] = True
            self._save_state()
        outputs.log_summary(metrics)
        return metrics


def _word_embeddings(model) -> np.ndarray:
    """A task model's word-embedding matrix, as numpy."""
    return model.encoder.embeddings.word_embeddings.embeddings.numpy()


def run_distillation(config: DistilConfig) -> dict:
    """Runs (or resumes, or reports) the distillation `config` describes; returns its metrics."""
    if config.source_tasks:
        from xtremedistil_tf.distill.multi_source import MultiSourceDistillation
        return MultiSourceDistillation(config).run()
    return Distillation(config).run()
