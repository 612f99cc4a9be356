"""PhaseCheckpoint: model, optimizer and snapshots come back bit for bit; a snapshot equal to the model is stored
once; a finished phase keeps no optimizer state; an earlier version's layout (a tf.train.Checkpoint beside the
snapshots) still restores its optimizer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from xtremedistil_tf import io
from xtremedistil_tf.errors import CheckpointError
from xtremedistil_tf.train import loop
from xtremedistil_tf.train.checkpoint import PhaseCheckpoint, get_weights


def _model(seed: int) -> keras.Model:
    """Embeddings (whose gradient is sparse), a dense layer and a head: the kinds of variables a student has."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((4,), dtype="int32")
    x = keras.layers.Dense(8, activation="gelu")(keras.layers.Embedding(50, 8)(ids))
    return keras.Model(ids, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x)))


def _trained(seed: int, steps: int):
    """A tiny model and its Adam after `steps` updates on a fixed batch (so moments and step count are set)."""
    model = _model(seed)
    optimizer = loop.make_optimizer(1e-2)
    loop.build_optimizer(optimizer, model.trainable_variables, tf.distribute.get_strategy())
    batch = tf.constant([[1, 5, 7, 5], [1, 9, 2, 0]])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(batch) - 1.0))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    for _ in range(steps):
        step()
    return model, optimizer, step


def _keys(folder) -> list[str]:
    return sorted(io.load_npz(str(folder / "snapshots.npz")))


def test_model_and_optimizer_come_back_and_train_on_identically(tmp_path):
    a, opt_a, step_a = _trained(1, 3)
    PhaseCheckpoint(str(tmp_path / "p"), a, opt_a).save({"epoch": 1}, {"phase_best": None})
    b, opt_b, step_b = _trained(2, 0)
    state, snapshots = PhaseCheckpoint(str(tmp_path / "p"), b, opt_b).restore()
    assert state == {"epoch": 1} and snapshots == {}
    assert int(opt_b.iterations.numpy()) == 3
    for x, y in zip(opt_a.variables + a.weights, opt_b.variables + b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)
    assert float(step_a()) == float(step_b())  # the next update is the same: moments and step restored
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)
    assert not any(p.name.startswith("ckpt") for p in (tmp_path / "p").iterdir())


def test_a_snapshot_equal_to_the_model_is_stored_once(tmp_path):
    a, opt, _ = _trained(1, 1)
    older = get_weights(a)
    a.weights[0].assign(a.weights[0].numpy() + 1.0)
    checkpoint = PhaseCheckpoint(str(tmp_path / "p"), a, opt)
    checkpoint.save({}, {"phase_best": get_weights(a), "chunk_best": older})
    keys = _keys(tmp_path / "p")
    assert "phase_best__model" in keys and not any(k.startswith("phase_best__") and k[-1].isdigit() for k in keys)
    n = len(a.weights)
    assert sum(k.startswith("chunk_best__") for k in keys) == n and sum(k.startswith("model__") for k in keys) == n
    b, opt_b, _ = _trained(2, 0)
    _, snapshots = PhaseCheckpoint(str(tmp_path / "p"), b, opt_b).restore()
    for name, expected in (("phase_best", get_weights(a)), ("chunk_best", older)):
        assert len(snapshots[name]) == n
        for x, y in zip(snapshots[name], expected):
            np.testing.assert_array_equal(x, y)


def test_a_finished_phase_keeps_no_optimizer_state(tmp_path):
    a, opt, _ = _trained(1, 2)
    PhaseCheckpoint(str(tmp_path / "p"), a, opt).save({"done": True}, {}, optimizer_state=False)
    assert not any(k.startswith("optimizer__") for k in _keys(tmp_path / "p"))
    b, opt_b, _ = _trained(2, 1)
    before = [v.numpy() for v in opt_b.variables]
    state, _ = PhaseCheckpoint(str(tmp_path / "p"), b, opt_b).restore()
    assert state == {"done": True}
    for x, y in zip(before, opt_b.variables):
        np.testing.assert_array_equal(x, y.numpy())
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_an_earlier_versions_checkpoint_restores_its_optimizer(tmp_path):
    """The layout before this one: model and optimizer in a tf.train.Checkpoint `ckpt`, the weights in
    snapshots.npz (written with np.savez)."""
    a, opt_a, _ = _trained(1, 3)
    folder = tmp_path / "p"
    with io.atomic_dir(str(folder)) as tmp:
        tf.train.Checkpoint(model=a, optimizer=opt_a).write(f"{tmp}/ckpt")
        with open(f"{tmp}/snapshots.npz", "wb") as f:
            np.savez(f, **{f"model__{i}": w for i, w in enumerate(get_weights(a))},
                     **{f"phase_best__{i}": w for i, w in enumerate(get_weights(a))})
        io.write_json(f"{tmp}/state.json", {"epoch": 2})
    b, opt_b, _ = _trained(2, 0)
    checkpoint = PhaseCheckpoint(str(folder), b, opt_b)
    assert checkpoint.exists()
    state, snapshots = checkpoint.restore()
    assert state == {"epoch": 2} and list(snapshots) == ["phase_best"]
    for x, y in zip(opt_a.variables + a.weights, opt_b.variables + b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


def test_another_optimizers_state_is_refused(tmp_path):
    a, opt, _ = _trained(1, 1)
    PhaseCheckpoint(str(tmp_path / "p"), a, opt).save({}, {})
    b = _model(2)
    other = loop.make_optimizer(1e-2)
    loop.build_optimizer(other, b.trainable_variables[:2], tf.distribute.get_strategy())
    with pytest.raises(CheckpointError, match="written by a different optimizer"):
        PhaseCheckpoint(str(tmp_path / "p"), b, other).restore()


def test_reserved_snapshot_names_are_refused(tmp_path):
    a, opt, _ = _trained(1, 0)
    with pytest.raises(ValueError, match="reserved"):
        PhaseCheckpoint(str(tmp_path / "p"), a, opt).save({}, {"optimizer": get_weights(a)})
    assert not (tmp_path / "p").exists()
