"""The runtimes a student is deployed in: how a Keras task model becomes each runtime's float and int8 files, and
how such a file is loaded (checked against what it must be) and run.

Each runtime is optional: `missing()` names what is not installed and callers skip that runtime.
- ONNX Runtime: float by tf2onnx (opset 17, dynamic batch and length); int8 dynamic (weights int8, activations
  quantized on the fly) and int8 static (QDQ, int8 weights per channel, uint8 activations calibrated on a sample:
  ORT's fast u8s8 kernels on x86; s8s8 QDQ ran 1.3x slower than float here).
- LiteRT (TFLite): float; int8 dynamic-range (weights int8); int8 full-integer (weights and activations, calibrated
  by a representative dataset; float kernels only where LiteRT has no int8 one). Fixed length, dynamic batch.
Every model takes int32 `input_ids`, `attention_mask`, `token_type_ids` [batch, length] and returns float32
`logits`.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging as py_logging
import os
import warnings
from typing import Callable, Iterator

import numpy as np

from xtremedistil_tf import fs
from xtremedistil_tf.errors import UserError
from xtremedistil_tf.models.encoder import INPUT_NAMES

CALIBRATION_BATCH = 8
Runner = Callable[[dict], np.ndarray]  # int32 inputs by name -> float32 logits


def serve_logits(model):
    """The task model as a function of the three int32 inputs -> {"logits": float32}."""
    import tensorflow as tf

    def serve(input_ids, attention_mask, token_type_ids):  # parameters in INPUT_NAMES order
        out = model(dict(zip(INPUT_NAMES, (input_ids, attention_mask, token_type_ids))), training=False)
        return {"logits": tf.cast(out["logits"], tf.float32)}

    return serve


def tf_runner(model) -> Runner:
    """The Keras task model itself as a runner (TensorFlow, compiled once per input shape)."""
    import tensorflow as tf
    fn = tf.function(serve_logits(model))

    def run(batch: dict) -> np.ndarray:
        out = fn(*(tf.constant(np.asarray(batch[n], np.int32)) for n in INPUT_NAMES))
        return out["logits"].numpy()

    return run


def input_signature(length: int | None):
    import tensorflow as tf
    return [tf.TensorSpec([None, length], tf.int32, name=n) for n in INPUT_NAMES]


def calibration_batches(calibration: dict, batch: int = CALIBRATION_BATCH) -> Iterator[dict]:
    """The calibration sample in batches, int32, keyed by input name."""
    n = len(calibration["input_ids"])
    for start in range(0, n, batch):
        yield {k: np.asarray(calibration[k][start:start + batch], np.int32) for k in INPUT_NAMES}


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Converters log every pass at INFO/WARNING through Python logging; keep only their errors."""
    saved = [(py_logging.getLogger(n), py_logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(py_logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[-1].strip() if text else type(e).__name__


def _check_io(path: str, inputs: dict[str, tuple], logits_shape: tuple, num_labels: int, token_level: bool) -> None:
    """A loaded file must take the three inputs and give logits of the task's width, else it is refused."""
    missing = [n for n in INPUT_NAMES if n not in inputs]
    if missing:
        raise UserError(f"{path}: not a student of this task: it has inputs {sorted(inputs)}, expected "
                        f"{', '.join(INPUT_NAMES)}")
    rank = 3 if token_level else 2
    width = logits_shape[-1] if logits_shape else None
    if len(logits_shape) != rank or (isinstance(width, (int, np.integer)) and width > 0 and width != num_labels):
        raise UserError(f"{path}: not a student of this task: its logits have shape {list(logits_shape)}, expected "
                        f"rank {rank} with {num_labels} outputs")


class Runtime:
    """One deployment runtime. Subclasses set `name`, `suffix`, `packages`, `variants`."""

    name = ""
    suffix = ""
    packages: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """What is not installed for this runtime (None: it is usable)."""
        absent = [p for p in self.packages if importlib.util.find_spec(p) is None]
        return f"not installed: {', '.join(absent)}" if absent else None

    def version(self) -> str:
        raise NotImplementedError

    def write(self, model, saved_model: str, folder: str, calibration: dict, length: int,
              variants: tuple[str, ...] | None = None) -> dict[str, str]:
        """Writes `variants` (default: every variant) of `model` into the local `folder`; {variant: path}.
        `saved_model` is a local SavedModel of `serve_logits(model)` at `length` tokens."""
        raise NotImplementedError

    def load(self, path: str, *, threads: int, num_labels: int, token_level: bool) -> Runner:
        """A runner for the file at `path`; refuses a file that is not a model or not this task's student."""
        raise NotImplementedError


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    suffix = ".onnx"
    packages = ("onnxruntime", "tf2onnx", "onnx")
    variants = ("float", "int8-dynamic", "int8-static")

    def version(self) -> str:
        import onnxruntime
        return onnxruntime.__version__

    def write(self, model, saved_model, folder, calibration, length, variants=None):
        if variants is not None and tuple(variants) != self.variants:
            raise ValueError(f"{self.name} writes all its variants {self.variants} (its int8 files derive from the "
                             f"float one); asked for {tuple(variants)}")
        import tensorflow as tf
        import tf2onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        paths = {v: os.path.join(folder, f"student.{v}{self.suffix}") for v in self.variants}
        fn = tf.function(serve_logits(model), input_signature=input_signature(None))

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = calibration_batches(calibration)

            def get_next(self):
                return next(self.batches, None)

        prepared = os.path.join(folder, ".prepared.onnx")
        with _quiet("tf2onnx", "onnxruntime", ""):  # quantize logs through the root logger
            tf2onnx.convert.from_function(fn, input_signature=input_signature(None), opset=17,
                                          output_path=paths["float"])
            # tf2onnx's graph defeats ORT's symbolic shape inference; ONNX's own shape inference is enough here.
            # Pre-processing fuses each Dense (MatMul + Add) into a Gemm, hence Gemm among the quantized op types.
            quant_pre_process(paths["float"], prepared, skip_symbolic_shape=True)
            quantize_dynamic(prepared, paths["int8-dynamic"], weight_type=QuantType.QInt8)
            quantize_static(prepared, paths["int8-static"], Reader(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul", "Gemm", "Gather"], per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        fs.remove(prepared)
        return paths

    def load(self, path, *, threads, num_labels, token_level):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types; one message for the user
            raise UserError(f"{path}: not a loadable ONNX model ({_first_line(e)})") from e
        inputs = {i.name: tuple(i.shape) for i in session.get_inputs()}
        outputs = {o.name: tuple(o.shape) for o in session.get_outputs()}
        if "logits" not in outputs:
            raise UserError(f"{path}: not a student of this task: no `logits` output (it has {sorted(outputs)})")
        _check_io(path, inputs, outputs["logits"], num_labels, token_level)

        def run(batch: dict) -> np.ndarray:
            feed = {n: np.asarray(batch[n], np.int32) for n in INPUT_NAMES}
            return session.run(["logits"], feed)[0]

        return run


class LiteRtRuntime(Runtime):
    name = "litert"
    suffix = ".tflite"
    packages = ("tensorflow",)
    variants = ("float", "int8-dynamic", "int8-full")

    def version(self) -> str:
        if importlib.util.find_spec("ai_edge_litert") is not None:
            from importlib.metadata import version
            return f"ai-edge-litert {version('ai-edge-litert')}"
        import tensorflow as tf
        return f"tf.lite {tf.__version__}"

    def write(self, model, saved_model, folder, calibration, length, variants=None):
        import tensorflow as tf
        paths = {}
        for variant in variants or self.variants:
            if variant not in self.variants:
                raise ValueError(f"{self.name}: no variant {variant!r} (it has {self.variants})")
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serve"])
            if variant != "float":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if variant == "int8-full":
                converter.representative_dataset = lambda: calibration_batches(calibration)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                       tf.lite.OpsSet.TFLITE_BUILTINS]
            with _quiet("tensorflow", "absl"), warnings.catch_warnings():
                # calibration runs tf.lite.Interpreter, which warns that it is deprecated
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
                data = converter.convert()
            paths[variant] = os.path.join(folder, f"student.{variant}{self.suffix}")
            with open(paths[variant], "wb") as f:
                f.write(data)
        return paths

    @staticmethod
    def _interpreter(path: str, threads: int):
        if importlib.util.find_spec("ai_edge_litert") is not None:
            from ai_edge_litert.interpreter import Interpreter
        else:  # tf.lite.Interpreter: deprecated in favour of ai-edge-litert, same behaviour
            import tensorflow as tf
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            Interpreter = tf.lite.Interpreter
        return Interpreter(model_path=path, num_threads=threads)

    def load(self, path, *, threads, num_labels, token_level):
        try:
            interpreter = self._interpreter(path, threads)
            runner = interpreter.get_signature_runner("serve")
            details_in = runner.get_input_details()
            details_out = runner.get_output_details()
        except Exception as e:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError with C++ text
            raise UserError(f"{path}: not a loadable LiteRT (TFLite) model with a `serve` signature "
                            f"({_first_line(e)})") from e
        if "logits" not in details_out:
            raise UserError(f"{path}: not a student of this task: no `logits` output (it has {sorted(details_out)})")
        inputs = {n: tuple(d["shape"]) for n, d in details_in.items()}
        _check_io(path, inputs, tuple(details_out["logits"]["shape"]), num_labels, token_level)
        length = int(details_in["input_ids"]["shape"][1])

        def run(batch: dict) -> np.ndarray:
            feed = {n: np.asarray(batch[n], np.int32) for n in INPUT_NAMES}
            if feed["input_ids"].shape[1] != length:
                raise UserError(f"{path}: takes {length} tokens a row, got {feed['input_ids'].shape[1]}")
            return runner(**feed)["logits"]

        return run


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (OnnxRuntime(), LiteRtRuntime())}
