"""One trainer for every training phase: teacher fine-tuning, each distillation stage, run_glue.py and continued
fine-tuning. A `LossModel` owns its loss objects and its `train_step`; the `Trainer` draws each epoch's batches,
runs the distributed step (its progress shown by `progress`, its curves written by `tensorboard`) and hands early
stopping and checkpoints to `phase.run_phase`."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.progress import make_progress
from xtremedistil_tf.train import loop
from xtremedistil_tf.train.checkpoint import PhaseCheckpoint
from xtremedistil_tf.train.phase import PhaseResult, StoppingRule, run_phase
from xtremedistil_tf.train.seeding import reseed_dropout, unit_seed
from xtremedistil_tf.train.tensorboard import NoRecorder, Recorder, StepScalars


def model_inputs(batch: dict) -> dict:
    """The encoder's inputs of a batch that also carries labels or targets."""
    return {k: batch[k] for k in INPUT_NAMES}


def unique_variables(variables) -> list:
    """`variables` in order, each once: compared by identity (a variable's `==` is elementwise)."""
    out = []
    for v in variables:
        if all(v is not o for o in out):
            out.append(v)
    return out


def dense_gradient(gradient):
    """`gradient` as a dense tensor. An embedding lookup's gradient is an IndexedSlices with one row per token, so a
    token that occurs twice in a batch has two rows; Keras 3's Adam squares such rows one by one for its second
    moment (g1² + g2² instead of (g1 + g2)²), unlike PyTorch's and TF 2's own Adam. Summing them first gives the
    true gradient (Keras densifies it in the update anyway)."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


class LossModel(keras.Model):
    """`model` trained on the sum of `losses` (loss objects, see `train.losses.Loss`).

    `train_step` computes the per-example loss, averages it over the global batch (so any number of replicas gives
    the same update), and applies the phase's optimizer to the phase's variables only. With `jit_compile`, forward,
    loss and gradients are compiled with XLA while the optimizer update stays outside, which is what works with
    several replicas. `test_step` returns the per-example loss.

    Args:
      model: the model whose outputs the losses read (called on the batch's encoder inputs).
      losses: the loss objects; their sum is the loss.
      token_mask: pass the attention mask to the losses, so token-level losses count real tokens only.
    """

    def __init__(self, model: keras.Model, losses=(), *, token_mask: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.loss_terms = list(losses)
        self.token_mask = token_mask
        self.phase_variables: list = []
        self.global_batch_size = 1
        self.mean_over_real_size = False
        self._grads_and_loss = self._gradients

    @property
    def needs(self) -> frozenset:
        """What the loss terms read beyond the model's logits (e.g. representations, attentions, the teacher), so
        `forward` computes only that."""
        out = frozenset()
        for term in self.loss_terms:
            out |= term.needs
        return out

    def forward(self, batch: dict, training: bool) -> tuple[dict, dict | None]:
        """The outputs the losses read: the model's, and a teacher's (None here)."""
        return self.model(model_inputs(batch), training=training), None

    def per_example_loss(self, batch: dict, training: bool):
        """The sum of the loss terms for each example of `batch` (padding masked out with `token_mask`)."""
        outputs, teacher = self.forward(batch, training)
        mask = batch["attention_mask"] if self.token_mask else None
        total = 0.0
        for term in self.loss_terms:
            total += term(outputs, teacher, batch, mask)
        return total

    def configure(self, *, optimizer: keras.optimizers.Optimizer, variables: list, global_batch_size: int,
                  jit_compile: bool = False, mean_over_real_size: bool = False) -> None:
        """Sets what `train_step` updates, with which optimizer, and the global batch the loss is averaged over
        (`mean_over_real_size`: the examples each step holds, see Batching)."""
        self.optimizer = optimizer
        self.phase_variables = list(variables)
        self.global_batch_size = global_batch_size
        self.mean_over_real_size = mean_over_real_size
        self._grads_and_loss = tf.function(self._gradients, jit_compile=True) if jit_compile else self._gradients

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The per-example loss of batch `x` summed and divided by the global batch size, so summing over replicas
        gives the global mean; with `mean_over_real_size`, divided by this replica's examples times the replicas,
        as Keras 2.3's losses did under a strategy (Keras' signature; `y`, `y_pred`, `sample_weight` unused)."""
        per_example = self.per_example_loss(x, training)
        if self.mean_over_real_size:
            return tf.nn.compute_average_loss(per_example)
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

    def _gradients(self, batch):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(batch, training=True)
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        return loss, tape.gradient(scaled, self.phase_variables)

    def train_step(self, batch):
        """One optimizer update of the phase's variables on this replica's share of the batch; returns its loss."""
        loss, grads = self._grads_and_loss(batch)
        # Variables the loss does not reach (a pooler under a first-token head) get no gradient.
        pairs = [(dense_gradient(g), v) for g, v in zip(grads, self.phase_variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return {"loss": loss}

    def test_step(self, batch):
        """The per-example loss in inference mode (no update), for validation losses."""
        return {"loss": self.per_example_loss(batch, False)}


@dataclasses.dataclass(frozen=True)
class Batching:
    """How an epoch's training batches are drawn.

    Args:
      global_batch_size: examples per step over all replicas.
      token_keys: the arrays with a token axis (cut with the inputs when batches are trimmed).
      trim: cut each batch to its longest example (off for fixed shapes).
      group_by_length: batches of examples of similar length (with `trim`).
      drop_partial: drop the last partial batch when there is at least one whole batch.
      mean_over_real_size: average each step's loss over the examples it holds, as Keras 2.3's fit did, instead of
        over the global batch size (a partial last batch then weighs as much as a whole one).
    """
    global_batch_size: int
    token_keys: tuple[str, ...] = INPUT_NAMES
    trim: bool = False
    group_by_length: bool = False
    drop_partial: bool = True
    mean_over_real_size: bool = False

    def drops_partial(self, n: int) -> bool:
        """Whether an epoch of `n` rows drops its last partial batch."""
        return self.drop_partial and n >= self.global_batch_size

    def steps(self, n: int) -> int:
        """The steps of an epoch of `n` rows: known from the rows, where a distributed dataset's cardinality may not
        be."""
        return n // self.global_batch_size if self.drops_partial(n) else -(-n // self.global_batch_size)

    def dataset(self, arrays: dict, seed: int) -> tf.data.Dataset:
        """One epoch of `arrays` as shuffled global batches; `seed` fixes the order, so a resumed epoch repeats it."""
        n = len(arrays["input_ids"])
        return loop.dataset_from_arrays(arrays, self.global_batch_size, shuffle=True, seed=seed,
                                        drop_remainder=self.drops_partial(n),
                                        trim=self.trim, token_keys=self.token_keys,
                                        group_by_length=self.trim and self.group_by_length)


def current_learning_rate(optimizer) -> float:
    """The optimizer's learning rate now (a schedule's value at the current step), read the same way under any
    strategy (a mirrored variable has no float())."""
    value = optimizer.learning_rate
    return float(np.asarray(tf.convert_to_tensor(getattr(value, "value", value))))


class Trainer:
    """Runs training phases under a strategy, each resumable from its checkpoint folder.

    Args:
      strategy: the tf.distribute strategy.
      seed: the run's seed; epoch `e` of chunk `c` in stream `s` uses `unit_seed(seed, s, c, e)` for its batch order
        and dropout, so a resumed phase equals an uninterrupted one.
      jit_compile: compile forward, loss and gradients with XLA.
      steps_per_execution: train steps a graph call (see `loop.Step`).
      log_every: log the running loss every N steps (0: never), in the log progress mode.
      progress: how each epoch reports its progress: auto, bar, log or none (see `progress.make_progress`).
      recorder: where the training curves and the per-epoch dev metrics go (`tensorboard.Recorder`; default none).
    """

    def __init__(self, strategy: tf.distribute.Strategy, *, seed: int, jit_compile: bool = False,
                 steps_per_execution: int = 1, log_every: int = 50, progress: str = "log",
                 recorder: Recorder | None = None):
        self.strategy = strategy
        self.seed = seed
        self.jit_compile = jit_compile
        self.steps_per_execution = steps_per_execution
        self.log_every = log_every
        self.progress = progress
        self.recorder = recorder if recorder is not None else NoRecorder()

    def fit(self, name: str, model: LossModel | list[LossModel], *, variables: list,
            optimizer: keras.optimizers.Optimizer, batching: Batching | list[Batching], checkpoint_dir: str,
            load_chunk: Callable[[int], dict], score: Callable[[Any], tuple], epochs: int, patience: int,
            num_chunks: int = 1, rule: StoppingRule = StoppingRule(), cross_chunk: bool = False, carried=None,
            stream: int = 0, weights: keras.Model | None = None) -> PhaseResult:
        """Trains `model` on `variables` over `num_chunks` chunks (`load_chunk(i)` gives a dict whose "train"
        arrays are trained on; `score(chunk)` gives (higher-is-better score, metrics)) with early stopping and
        a checkpoint after every epoch; leaves the model holding the phase's final weights.

        Several sources at once (multi-task training): `model` is a list of LossModels (one per source, sharing
        layers), `variables` and `batching` lists of their variables and batchings (one global batch size), "train" a
        list of their arrays (None: the source sits the chunk out), `weights` a model holding them all (what is
        checkpointed); each epoch's batches of every source are interleaved (`loop.interleaved_order`) and one
        optimizer updates them all."""
        several = isinstance(model, (list, tuple))
        models, groups = (list(model), list(variables)) if several else ([model], [variables])
        batchings = list(batching) if several else [batching]
        if len({b.global_batch_size for b in batchings}) != 1 or not len(models) == len(groups) == len(batchings):
            raise ValueError("fit: one variable list and one batching per model, with one global batch size")
        batching = batchings[0]
        loop.build_optimizer(optimizer, unique_variables(v for group in groups for v in group), self.strategy)
        for m, group, b in zip(models, groups, batchings):
            m.configure(optimizer=optimizer, variables=group, global_batch_size=b.global_batch_size,
                        jit_compile=self.jit_compile, mean_over_real_size=b.mean_over_real_size)
        # Several sources: one Step each, their steps_per_execution loop in InterleavedSteps.
        steps = [loop.Step(self.strategy, m, 1 if several else self.steps_per_execution) for m in models]
        interleaved = loop.InterleavedSteps(steps, self.steps_per_execution) if several else None
        weights = weights if weights is not None else models[0].model
        curves = StepScalars(self.recorder, name, global_batch_size=batching.global_batch_size,
                             learning_rate=lambda: current_learning_rate(optimizer)) if self.recorder.enabled else None

        def train_epoch(chunk_data, chunk, epoch):
            seed = unit_seed(self.seed, stream, chunk, epoch)
            reseed_dropout(weights, seed)
            trains = chunk_data["train"] if several else [chunk_data["train"]]
            sizes = [0 if t is None else len(t["input_ids"]) for t in trains]
            # A source's batch order: the epoch's seed, the source's index mixed in after the first.
            datasets = [None if not n else loop.distribute(
                self.strategy, batchings[i].dataset(t, seed if i == 0 else unit_seed(seed, i)))
                for i, (t, n) in enumerate(zip(trains, sizes))]
            if curves is not None:
                curves.start_epoch(sum(sizes))
            description = f"{name} chunk {chunk} epoch {epoch + 1}"
            progress = make_progress(self.progress, log_every=self.log_every)
            if several:
                order = loop.interleaved_order([b.steps(n) if n else 0 for b, n in zip(batchings, sizes)], seed)
                loss = loop.run_interleaved_epoch(interleaved, datasets, order, description=description,
                                                  on_batch=curves, progress=progress)
            else:
                loss = loop.run_epoch(steps[0], datasets[0], description=description, total=batching.steps(sizes[0]),
                                      on_batch=curves, progress=progress)
            if curves is not None:
                curves.end_epoch()
            return loss

        try:
            return run_phase(name, model=weights, checkpoint=PhaseCheckpoint(checkpoint_dir, weights, optimizer),
                             num_chunks=num_chunks, load_chunk=load_chunk, train_epoch=train_epoch, score=score,
                             epochs=epochs, patience=patience, rule=rule, cross_chunk=cross_chunk, carried=carried,
                             recorder=self.recorder)
        finally:
            self.recorder.flush()
