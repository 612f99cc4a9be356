"""The distributed loop under every training phase: batches, the compiled step, one epoch, and prediction.

We own the loop rather than using `Model.fit`: it runs the same way under the default, Mirrored, MultiWorker and
TPU strategies (Keras 3's `fit` fails under MultiWorkerMirroredStrategy, keras-team/keras#20585). It only calls
the model's own `train_step` (see `trainer.LossModel`), which averages the per-example loss over the global
batch, so the result is the same for any number of replicas.
"""
from __future__ import annotations

import functools
import math
import weakref
from typing import Callable, Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf

from xtremedistil_tf import optimizers
from xtremedistil_tf.errors import UserError
from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.progress import Progress, make_progress


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN or Inf; the stage stops and the last good checkpoint is kept."""


def make_optimizer(learning_rate: float, *, epsilon: float = 1e-7, clipnorm: float | None = None,
                   weight_decay: float | None = None, precision: str | None = None) -> keras.optimizers.Optimizer:
    """Adam (AdamW with `weight_decay`) with fused updates (`optimizers`), wrapped in a LossScaleOptimizer under
    mixed_float16 (`precision`, default: the global policy) so float16 gradients do not underflow."""
    if weight_decay:
        opt = optimizers.AdamW(learning_rate, weight_decay=weight_decay, epsilon=epsilon, clipnorm=clipnorm)
    else:
        opt = optimizers.Adam(learning_rate, epsilon=epsilon, clipnorm=clipnorm)
    if (precision or keras.mixed_precision.global_policy().name) == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class Step:
    """A compiled distributed train step: every replica runs `model.train_step(batch)` (see `LossModel`), whose
    loss is already divided by the global batch size, and the replicas' losses are summed.

    With `steps_per_execution` > 1, `run_many(iterator)` runs up to that many steps in one graph call (a
    `tf.while_loop` over the iterator, as Keras' `steps_per_execution`) and returns their losses: small models are
    then not bound by the per-step dispatch and the host round trip, and TPUs get a step loop on the device.
    The steps themselves are the same ops on the same batches.
    """

    def __init__(self, strategy: tf.distribute.Strategy, model, steps_per_execution: int = 1):
        if steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        self.strategy = strategy
        self.model = model
        self.steps_per_execution = steps_per_execution

        def distributed_step(batch):
            out = strategy.run(model.train_step, args=(batch,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, out["loss"], axis=None)

        def many_steps(iterator):
            # The next batch is fetched only while another step is due, so no batch is taken and left unused.
            k = steps_per_execution

            def body(i, batch, losses):
                losses = losses.write(i, tf.cast(distributed_step(batch.get_value()), tf.float32))
                batch = tf.cond(i + 1 < k, iterator.get_next_as_optional, lambda: batch)
                return i + 1, batch, losses

            _, _, losses = tf.while_loop(
                lambda i, batch, _: tf.logical_and(i < k, batch.has_value()), body,
                [tf.constant(0), iterator.get_next_as_optional(),
                 tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())])
            return losses.stack()

        self._distributed_step = distributed_step
        self._step = tf.function(distributed_step, reduce_retracing=True)
        self._many = tf.function(many_steps, reduce_retracing=True)
        self._spec = None

    def bind(self, dataset) -> None:
        """Traces the step once for `dataset`'s element spec, whose unknown batch and length dimensions stay
        unknown: batches cut to their own length then reuse one graph instead of tracing (seconds each) per shape."""
        spec = getattr(dataset, "element_spec", None)
        if spec is not None and spec != self._spec:
            self._spec = spec
            self._step = tf.function(self._distributed_step, input_signature=[spec])

    def __call__(self, batch) -> tf.Tensor:
        return self._step(batch)

    def run_many(self, iterator) -> np.ndarray:
        """Up to `steps_per_execution` steps on `iterator`'s next batches in one call; their losses (fewer when the
        iterator ends, none when it has ended)."""
        return self._many(iterator).numpy()


def build_optimizer(optimizer: keras.optimizers.Optimizer, variables: list, strategy) -> None:
    """Creates the optimizer's slots now, so a checkpoint can restore them before the first step."""
    with strategy.scope():
        optimizer.build(variables)


def distribute(strategy, dataset: tf.data.Dataset):
    """`dataset`'s global batches split across the strategy's replicas."""
    return strategy.experimental_distribute_dataset(dataset)


def trim_batch(batch: dict, seq_len: int, token_keys=INPUT_NAMES, multiple: int = 8) -> dict:
    """Cuts the token axis of `token_keys` to the batch's longest real sequence, rounded up to `multiple` (at
    most 8 shapes for seq_len 64). Exact: padding is masked out of attention and of every loss, and positions
    are absolute."""
    length = tf.reduce_max(tf.reduce_sum(tf.cast(batch["attention_mask"], "int32"), axis=1))
    length = tf.minimum(((length + multiple - 1) // multiple) * multiple, seq_len)
    return {k: v[:, :length] if k in token_keys else v for k, v in batch.items()}


def length_grouped_order(lengths: np.ndarray, global_batch_size: int, *, seed: int, group: int = 50) -> np.ndarray:
    """An epoch's order of the examples such that consecutive `global_batch_size` blocks hold examples of similar
    length (Hugging Face's group_by_length): a seeded shuffle, a sort by length within every `group` batches'
    worth, then the whole batches in a seeded random order; the examples that do not fill a batch come last."""
    rng = np.random.RandomState(seed % (2**32))
    order = rng.permutation(len(lengths))
    full = len(order) - len(order) % global_batch_size
    batches = []
    for start in range(0, full, global_batch_size * group):
        chunk = order[start:min(start + global_batch_size * group, full)]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + global_batch_size] for i in range(0, len(chunk), global_batch_size))
    rng.shuffle(batches)
    return np.concatenate(batches + [order[full:]]) if batches else order


def dataset_from_arrays(arrays: dict[str, np.ndarray], global_batch_size: int, *, shuffle: bool, seed: int,
                        drop_remainder: bool, trim: bool = False, token_keys: tuple[str, ...] = INPUT_NAMES,
                        group_by_length: bool = False) -> tf.data.Dataset:
    """A batched dataset of dicts; shuffled with a fixed seed so every epoch order is reproducible.

    With `trim`, each batch keeps only as many token positions as its longest example needs (see `trim_batch`;
    `token_keys` name the arrays with a token axis); leave it off for fixed shapes (TPU). With `group_by_length`
    (and `shuffle`), batches hold examples of similar length (`length_grouped_order`), so trimmed batches carry
    little padding: on short-sentence data such as SST-2 about a third of the tokens of random batches.
    """
    if shuffle and group_by_length:
        order = length_grouped_order(arrays["attention_mask"].sum(axis=1), global_batch_size, seed=seed)
        arrays = {k: v[order] for k, v in arrays.items()}
        shuffle = False
    ds = tf.data.Dataset.from_tensor_slices(arrays)
    if shuffle:
        n = len(next(iter(arrays.values())))
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    if trim:
        seq_len = arrays["input_ids"].shape[1]
        ds = ds.map(lambda b: trim_batch(b, seq_len, token_keys))
    return without_autotune(ds.prefetch(tf.data.AUTOTUNE))


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data's autotuning off, for pipelines that slice arrays already in memory (nothing to tune).

    The autotuner's thread sleeps through its optimisation period, which doubles while an iterator lives, and
    the iterator's destructor waits for it to wake: at the end of every pass, up to 16 s after a 25 s epoch
    (TF 2.21, measured in the README's main job; benchmarks/README.md section 1f)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def run_epoch(step: Step, dataset: Iterable, *, description: str, log_every: int = 50,
              on_batch: Callable[[int, float], None] | None = None, total: int | None = None,
              progress: Progress | None = None) -> float:
    """One pass; returns the mean loss. Raises NonFiniteLossError naming `description` and the step.

    `progress` reports each step with the running loss (default: a log line every `log_every` steps); `total`, the
    number of steps when known (a distributed dataset may not tell: see `Batching.steps`), gives it an end and an
    ETA. `on_batch(index, loss)` is called after every step with that step's loss. A `Step` with
    `steps_per_execution` > 1 runs that many steps a call; their losses are then reported together."""
    if isinstance(step, Step):
        step.bind(dataset)
    return _mean_loss(_losses(step, dataset), description=description, log_every=log_every, on_batch=on_batch,
                      total=total, progress=progress)


class InterleavedSteps:
    """Several sources' compiled steps (one `Step` each: their batches and losses differ in shape), run in a given
    order of sources; with `steps_per_execution` > 1, up to that many steps a graph call: a `tf.while_loop` over a
    slice of the order whose body picks the source's step with `tf.switch_case` and draws its batch from that
    source's iterator, as `Step.run_many` does for one source. The same steps on the same batches either way."""

    def __init__(self, steps: list[Step], steps_per_execution: int = 1):
        if steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        self.steps = list(steps)
        self.steps_per_execution = steps_per_execution

        def many(iterators: dict, order, count):
            # Steps order[:count]; `order` always has steps_per_execution entries, so the last call of a pass, with
            # fewer steps, reuses the trace. One branch a source; a source without an iterator (sitting the chunk
            # out) is never in the order.
            def branch(j):
                if str(j) not in iterators:
                    return lambda: tf.constant(0.0)
                return lambda: tf.cast(self.steps[j]._distributed_step(next(iterators[str(j)])), tf.float32)

            branches = [branch(j) for j in range(len(self.steps))]

            def body(i, losses):
                return i + 1, losses.write(i, tf.switch_case(order[i], branches))

            _, losses = tf.while_loop(lambda i, _: i < count, body, [
                tf.constant(0), tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())])
            return losses.stack()

        self._many = tf.function(many, reduce_retracing=True)

    def losses(self, datasets: list, order: np.ndarray) -> Iterator[float]:
        """Each step's loss over one pass: step `i` trains source `order[i]` on the next batch of `datasets[order[i]]`
        (None: a source that sits the pass out)."""
        if self.steps_per_execution == 1:
            for step, dataset in zip(self.steps, datasets):
                if dataset is not None:
                    step.bind(dataset)
            iterators = [None if d is None else iter(d) for d in datasets]
            for source in order:
                yield float(self.steps[source](next(iterators[source])))
            return
        iterators = {str(j): iter(d) for j, d in enumerate(datasets) if d is not None}
        k = self.steps_per_execution
        for start in range(0, len(order), k):
            steps = order[start:start + k]
            part = np.zeros(k, np.int32)
            part[:len(steps)] = steps
            yield from (float(loss) for loss in self._many(iterators, tf.constant(part), tf.constant(len(steps))))


def interleaved_order(counts: list[int], seed: int) -> np.ndarray:
    """Which source each step of an interleaved epoch draws from: every source's `counts[i]` batches once, in a
    seeded random order (so sources mix in proportion to their size, and a resumed epoch repeats the order)."""
    order = np.repeat(np.arange(len(counts)), counts)
    np.random.RandomState(seed % (2**32)).shuffle(order)
    return order


def run_interleaved_epoch(steps: InterleavedSteps, datasets: list, order: np.ndarray, *, description: str,
                          log_every: int = 50, on_batch: Callable[[int, float], None] | None = None,
                          progress: Progress | None = None) -> float:
    """One pass over several sources' datasets, step `i` drawing its batch from `datasets[order[i]]` and training
    that source's step (see `InterleavedSteps`); returns the mean loss, as run_epoch."""
    return _mean_loss(steps.losses(datasets, order), description=description, log_every=log_every,
                      on_batch=on_batch, total=len(order), progress=progress)


def _mean_loss(losses: Iterable[float], *, description: str, log_every: int, on_batch, total: int | None,
               progress: Progress | None) -> float:
    """Consumes one pass's step losses, reporting progress; their mean. Raises NonFiniteLossError."""
    progress = make_progress("log", log_every=log_every) if progress is None else progress
    total_loss, count = 0.0, 0
    progress.start(total, description)
    try:
        for i, loss in enumerate(losses):
            if not math.isfinite(loss):
                raise NonFiniteLossError(f"{description}: loss is {loss} at step {i + 1}; stopping (the last good "
                                         "checkpoint is kept). Try a lower learning rate, or --opt_policy=float32.")
            total_loss += loss
            count += 1
            if on_batch:
                on_batch(i, loss)
            progress.update(i + 1, total_loss / count)
    finally:
        progress.finish()
    return total_loss / max(count, 1)


def _losses(step: Step, dataset: Iterable) -> Iterator[float]:
    """Each step's loss over one pass of `dataset`, one graph call a step or `steps_per_execution` steps a call
    (for datasets and distributed datasets, which give iterators a graph can draw from)."""
    k = getattr(step, "steps_per_execution", 1)
    if k == 1 or not hasattr(dataset, "element_spec"):
        for batch in dataset:
            yield float(step(batch))
        return
    iterator = iter(dataset)
    while True:
        losses = step.run_many(iterator)
        yield from (float(loss) for loss in losses)
        if len(losses) < k:
            return


def predict(strategy, fn: Callable, arrays: dict[str, np.ndarray], global_batch_size: int, *,
            trim: bool = False, token_outputs: tuple[str, ...] = (), progress: Progress | None = None,
            description: str = "predicting", jit_compile: bool = False) -> dict[str, np.ndarray]:
    """Runs `fn(batch) -> dict of tensors` over all rows under the strategy and returns numpy arrays in row order.

    Rows are padded to a whole number of global batches (fixed shapes for TPU/XLA) and the padding cut off.
    With `trim`, rows are sorted by length first and each batch is cut to its longest row (see `trim_batch`):
    the same outputs at real positions for a fraction of the work; the outputs named in `token_outputs` (those
    with a token axis) are padded back to the full length with zeros. `progress` (default: none) reports the
    batches under `description`. With `jit_compile`, `fn` runs compiled by XLA on each replica, one compilation per
    batch shape (the batch size is fixed; trimmed lengths are multiples of 8, so at most seq_len / 8 of them).
    """
    n = len(next(iter(arrays.values())))
    seq_len = arrays["input_ids"].shape[1] if "input_ids" in arrays else None
    order = np.arange(n)
    if trim and seq_len:
        order = np.argsort(-arrays["attention_mask"].sum(axis=1), kind="stable")
    padded_n = max(global_batch_size, int(math.ceil(n / global_batch_size)) * global_batch_size)
    index = np.concatenate([order, np.repeat(order[-1:], padded_n - n)])
    padded = {k: v[index] for k, v in arrays.items()}
    ds = tf.data.Dataset.from_tensor_slices(padded).batch(global_batch_size, drop_remainder=True)
    if trim and seq_len:
        ds = ds.map(lambda b: trim_batch(b, seq_len, tuple(k for k in INPUT_NAMES if k in padded)))
    ds = distribute(strategy, without_autotune(ds))

    run = _compiled_predict(strategy, fn, ds.element_spec, jit_compile)
    chunks: dict[str, list] = {}
    progress = progress or Progress()
    progress.start(padded_n // global_batch_size, description)
    try:
        for i, batch in enumerate(ds):
            for k, v in run(batch).items():
                v = v.numpy()
                if k in token_outputs and v.shape[1] < seq_len:
                    pad = [(0, 0)] * v.ndim
                    pad[1] = (0, seq_len - v.shape[1])
                    v = np.pad(v, pad)
                chunks.setdefault(k, []).append(v)
            progress.update(i + 1)
    finally:
        progress.finish()
    out = {k: np.concatenate(v)[:n] for k, v in chunks.items()}
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return {k: v[inverse] for k, v in out.items()}


_PREDICT_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_predict(strategy, fn, spec, jit_compile: bool = False):
    """One tf.function per (fn, strategy, batch spec, XLA or not), so repeated evaluations reuse the trace; with the
    spec's unknown length, batches trimmed to different lengths share one graph instead of tracing one per length."""
    per_fn = _PREDICT_CACHE.setdefault(fn, {})
    key = (id(strategy), repr(spec), jit_compile)
    if key not in per_fn:
        # The compiled function holds `fn` weakly: a strong reference would keep the cache's key, and with it the
        # model `fn` closes over, alive for ever (a leak of one model per run_glue cell in a long process).
        # A partial, not a closure: TensorFlow counts traces per code object, so closures of one `def` made for
        # different models (one per stage) would add up to a false "frequent retracing" warning.
        per_fn[key] = tf.function(functools.partial(_predict_step, strategy, weakref.ref(fn), jit_compile),
                                  input_signature=[spec])
    return per_fn[key]


def _predict_step(strategy, fn_ref, jit_compile, batch):
    fn = fn_ref()
    out = strategy.run(tf.function(fn, jit_compile=True) if jit_compile else fn, args=(batch,))
    return {k: strategy.gather(v, axis=0) for k, v in out.items()}
