"""The one way a model becomes JSON + weights and back: Keras serialization plus a `.weights.h5` file.

A model is described by `keras.saving.serialize_keras_object` (class, module, registered name and `get_config()`);
every class is registered with `@keras.saving.register_keras_serializable(package="xtremedistil_tf")`, so loading
looks the class up in Keras' registry and never imports a module named in a file. A class defined in a higher
layer (the distillation `Student`) loads once its module has been imported by the caller.

`save_model` / `load_model` write and read a run folder's `<weights_name>` + `<config_name>`; the config is the
serialized model with any `extra` keys (e.g. label names) beside it. Configs written before this format,
`{"class_name": "TaskModel" | "Student", "config": {...}}`, still load. `convert.export.save_keras` uses the same
`model_spec` / `model_from_spec` / `load_weights` inside its own folder layout.

Folders may be local or remote (gs://...): files are written through `xtremedistil_tf.io` (crash-safe) and read
through `xtremedistil_tf.fs`; a remote `.weights.h5` is read from a local copy, since h5py needs a real file.
"""
from __future__ import annotations

import keras

from xtremedistil_tf import fs, io
from xtremedistil_tf.errors import CheckpointError
from xtremedistil_tf.models import heads as _heads  # noqa: F401 - registers Encoder, TaskModel and the heads

PACKAGE = "xtremedistil_tf"
# Keys of a serialized Keras object; `extra` keys must not collide with them.
SPEC_KEYS = ("module", "class_name", "config", "registered_name")


def model_spec(model: keras.Model) -> dict:
    """The model's JSON description (Keras' serialized form, without compile or build state)."""
    spec = keras.saving.serialize_keras_object(model)
    return {k: spec[k] for k in SPEC_KEYS if k in spec}


def registered_name(spec: dict) -> str:
    """The Keras registry name of a spec's class; old-format specs (no `registered_name`) name our classes."""
    name = spec.get("registered_name")
    return name if name else f"{PACKAGE}>{spec.get('class_name')}"


def model_from_spec(spec, *, source: str, hint: str = "") -> keras.Model:
    """Rebuilds (and builds) the model a spec describes; new and old formats both load.

    `source` names the file in errors; `hint` is appended to the error of a config that cannot be rebuilt.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict) or not spec.get("class_name"):
        raise CheckpointError(f"{source}: cannot rebuild the model (not a serialized model: expected an object "
                              f"with class_name and config){hint}")
    name = registered_name(spec)
    if keras.saving.get_registered_object(name) is None:
        module = spec.get("module")
        raise CheckpointError(f"{source}: unknown model class {spec['class_name']!r} ({name} is not registered"
                              + (f"; import {module} before loading" if module else
                                 "; import the module that defines it before loading") + ")")
    full = {"module": spec.get("module"), "class_name": spec["class_name"], "config": spec["config"],
            "registered_name": name}
    try:
        model = keras.saving.deserialize_keras_object(full)
        if not model.built:
            model.build()
    except Exception as e:  # noqa: BLE001 - any failure to rebuild is one clear message
        raise CheckpointError(f"{source}: cannot rebuild the model ({type(e).__name__}: {_first_line(e)})"
                              f"{hint}") from None
    return model


def write_weights(model: keras.Model, path: str) -> None:
    """Writes the model's weights to `path` (a `.weights.h5` file) atomically."""
    with io.atomic_path(path) as tmp:
        model.save_weights(tmp)


def load_weights(model: keras.Model, path: str, *, context: str = "", hint: str = "") -> None:
    """Loads a `.weights.h5` file (local or remote) into a built model; a missing or damaged file raises
    CheckpointError naming it."""
    try:
        with fs.local_copy(path) as local:  # h5py reads real files only: a remote file is downloaded first
            model.load_weights(local)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot load the weights{context} ({type(e).__name__}: {_first_line(e)})"
                              f"{hint}") from None


def save_model(model: keras.Model, folder: str, weights_name: str, config_name: str,
               extra: dict | None = None) -> None:
    """Writes `folder/weights_name` and `folder/config_name` (the serialized model plus `extra`), each atomically."""
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(SPEC_KEYS))
    if clash:
        raise ValueError(f"extra keys {clash} would overwrite the model description")
    if not model.built:
        model.build()
    fs.makedirs(folder)
    write_weights(model, fs.join(folder, weights_name))
    io.write_json(fs.join(folder, config_name), {**model_spec(model), **extra})


def load_model(folder: str, weights_name: str, config_name: str) -> keras.Model:
    """Rebuilds a model written by `save_model` (or by the older class-name format) and loads its weights.

    A damaged config or weights file raises CheckpointError naming it; so does a class nobody registered.
    """
    config_path, weights_path = fs.join(folder, config_name), fs.join(folder, weights_name)
    if not fs.isfile(config_path):
        raise CheckpointError(f"{config_path}: no such file")
    hint = f"; remove {folder} to start it again"
    model = model_from_spec(io.read_json(config_path), source=config_path, hint=hint)
    load_weights(model, weights_path, hint=hint)
    return model


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""
