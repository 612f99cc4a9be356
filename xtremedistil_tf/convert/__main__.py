"""Convert a checkpoint: `python -m xtremedistil_tf.convert --input SRC --output DST --format {hf,saved_model,keras}`.

SRC: a Hugging Face folder or hub id, a Google BERT checkpoint folder, or a Keras folder written by this command.
`--verify` runs SRC in transformers (PyTorch) and DST in TensorFlow on a few sentences of different lengths (SRC's
tokenizer if it has one, else random token ids), prints the largest absolute difference of the last hidden state
over the real (non-padding) tokens, and exits 1 when it is above `--tolerance`. Any other failure: one line on
stderr and exit 2 (`--verbose` for the traceback). SRC and DST may be local paths or paths with a scheme (gs://...).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

from xtremedistil_tf import fs
from xtremedistil_tf.cli import start_tensorflow_quietly

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
SENTENCES = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Knowledge distillation trains a small student model to reproduce the predictions of a much larger teacher, "
    "so that it runs fast on modest hardware.",
    "Short.",
    "It was the best of times, it was the worst of times.",
]
RANDOM_LENGTHS = (16, 9, 4, 12)


def parse_args(argv=None):
    """The command line of `python -m xtremedistil_tf.convert`."""
    p = argparse.ArgumentParser(prog="python -m xtremedistil_tf.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="HF folder or hub id, Google BERT checkpoint folder, or Keras "
                                                   "folder written by --format keras")
    p.add_argument("--output", required=True, help="output folder (replaced as a whole if it is a previous export)")
    p.add_argument("--format", required=True, choices=("hf", "saved_model", "keras"))
    p.add_argument("--verify", action="store_true",
                   help="compare SRC in transformers (PyTorch) with DST in TensorFlow on a few sentences")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed absolute difference of the last hidden state (default 1e-4)")
    p.add_argument("--allow_pickle", "--allow-pickle", action="store_true",
                   help="allow a full unpickle of pytorch_model.bin (only for files you trust)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output even if it is a non-empty folder that is not a previous export")
    p.add_argument("--export_int8", "--export-int8", action="store_true",
                   help="also write OUTPUT/int8/: the task model in ONNX Runtime and LiteRT, float and int8, each run "
                        "on the calibration texts and compared with the TensorFlow model (argmax agreement)")
    p.add_argument("--calibration_file", "--calibration-file", default="",
                   help="texts (one a line; a pair as text<TAB>text) that calibrate and check the int8 models "
                        "(default: a few built-in sentences)")
    p.add_argument("--seq_len", "--seq-len", type=int, default=128,
                   help="tokens a row of the int8 exports (LiteRT files have this fixed length)")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "log", "none"),
                   help="a bar over the steps (load, export, verify) in a terminal, a line on stderr after each step "
                        "otherwise (auto), or nothing")
    p.add_argument("--verbose", action="store_true", help="log details and show tracebacks")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------------ verification
def verification_batch(loaded, max_len: int = 64, seed: int = 0):
    """(input_ids, attention_mask, token_type_ids) as int64 numpy, and a description of where they came from."""
    import numpy as np
    encoder = loaded.encoder
    max_len = min(max_len, encoder.max_seq_len)
    if loaded.tokenizer:
        try:
            tok = _load_tokenizer(loaded.tokenizer)
            enc = tok(SENTENCES, padding=True, truncation=True, max_length=max_len, return_tensors="np")
            ids = enc["input_ids"].astype(np.int64)
            mask = enc["attention_mask"].astype(np.int64)
            types = enc.get("token_type_ids")
            types = np.zeros_like(ids) if types is None or encoder.type_vocab_size == 0 else types.astype(np.int64)
            if int(ids.max()) < encoder.vocab_size:
                return (ids, mask, types), f"{len(SENTENCES)} sentences tokenized by {loaded.tokenizer}"
        except Exception as e:  # noqa: BLE001 - fall back to random ids, say so
            print(f"note: cannot use the tokenizer in {loaded.tokenizer} ({type(e).__name__}); using random ids",
                  file=sys.stderr)
    rng = np.random.default_rng(seed)
    lengths = [min(n, max_len) for n in RANDOM_LENGTHS]
    t = max(lengths)
    pad = encoder.pad_token_id
    ids = rng.integers(min(5, encoder.vocab_size - 1), encoder.vocab_size, size=(len(lengths), t))
    ids[ids == pad] = (pad + 1) % encoder.vocab_size
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = pad
    types = np.zeros_like(ids)
    if encoder.type_vocab_size > 1:
        types[:, t // 2:] = 1
        types *= mask
    return (ids.astype(np.int64), mask, types.astype(np.int64)), \
        f"{len(lengths)} random sequences of lengths {lengths}"


def _load_tokenizer(folder: str):
    import transformers
    fast = fs.isfile(fs.join(folder, "tokenizer_config.json")) or fs.isfile(fs.join(folder, "tokenizer.json"))
    # A Google folder with only vocab.txt: WordPiece; the folder name says whether it is cased.
    name = fs.basename(folder).lower()
    lower = not ("cased" in name and "uncased" not in name)
    with _local_tokenizer_folder(folder) as local:  # transformers reads local folders only
        if fast:
            return transformers.AutoTokenizer.from_pretrained(local, trust_remote_code=False)
        return transformers.BertTokenizer.from_pretrained(local, do_lower_case=lower, trust_remote_code=False)


@contextlib.contextmanager
def _local_tokenizer_folder(folder: str):
    """`folder` itself when local; for a remote folder, a local copy of its tokenizer files only (not the
    model's weights beside them)."""
    if not fs.is_remote(folder):
        yield folder
        return
    from xtremedistil_tf.convert.export import find_tokenizer_files
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(fs.local_copy(f)) for f in find_tokenizer_files(folder)]
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="xtremedistil-tokenizer-"))
        for f in files:  # links to the downloaded copies: the tokenizer sees one folder, nothing is copied twice
            os.symlink(f, os.path.join(scratch, os.path.basename(f)))
        yield scratch


def _check_tokenizer_fits(loaded) -> None:
    """The tokenizer that travels with the model must not produce ids beyond its embedding table."""
    from xtremedistil_tf.data.tokenize import check_vocabulary
    try:
        tok = _load_tokenizer(loaded.tokenizer)
    except Exception as e:  # noqa: BLE001 - the files are still copied; say that they were not checked
        print(f"note: cannot load the tokenizer in {loaded.tokenizer} ({type(e).__name__}); its vocabulary is not "
              "checked against the model", file=sys.stderr)
        return
    check_vocabulary(tok, loaded.encoder.vocab_size, where=loaded.tokenizer)


def torch_reference(loaded):
    """SRC as a transformers PyTorch model (eager attention), read from SRC's own files where possible."""
    import torch
    import transformers

    from xtremedistil_tf.errors import UserError
    if loaded.format == "hf":
        with fs.local_copy(loaded.source) as local:  # transformers reads local folders only
            return transformers.AutoModel.from_pretrained(local, attn_implementation="eager",
                                                           trust_remote_code=False).eval()
    if loaded.format == "google":
        from xtremedistil_tf.convert.google import google_to_hf_state_dict, read_google_checkpoint
        cfg = dict(loaded.config)
        state = google_to_hf_state_dict(read_google_checkpoint(loaded.source), cfg["num_hidden_layers"])
    else:  # our Keras folder: PyTorch has no reader for it, so rebuild from its weights under HF names
        from xtremedistil_tf.convert.hf import encoder_state_dict, hf_config_from_encoder
        cfg = hf_config_from_encoder(loaded.encoder)
        state = encoder_state_dict(loaded.encoder)
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **{k: v for k, v in cfg.items()
                                                              if not k.startswith("_")})
    model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval()
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.") and not k.endswith("position_ids")]
    if missing:
        raise UserError(f"{loaded.source}: cannot rebuild the PyTorch reference; missing {', '.join(missing[:10])}")
    return model


def tf_outputs(fmt: str, output: str, batch):
    """DST's last hidden state, run in TensorFlow; `batch` is (input_ids, attention_mask, token_type_ids)."""
    import numpy as np
    import tensorflow as tf

    from xtremedistil_tf.models.encoder import INPUT_NAMES
    inputs = dict(zip(INPUT_NAMES, batch))
    if fmt == "saved_model":
        fn = tf.saved_model.load(output).signatures["serving_default"]
        out = fn(**{k: tf.constant(v, tf.int32) for k, v in inputs.items()})
        return np.asarray(out["last_hidden_state"], np.float32)
    from xtremedistil_tf.convert.export import load_any, load_keras
    model = load_keras(output) if fmt == "keras" else load_any(output).model
    out = model(inputs, training=False)
    return np.asarray(tf.cast(out["sequence_output"], tf.float32))


def verify(loaded, fmt: str, output: str, tolerance: float) -> tuple[float, bool]:
    """Runs SRC in transformers and DST in TensorFlow on one batch; (largest difference, within tolerance)."""
    import numpy as np
    import torch

    from xtremedistil_tf.models.encoder import INPUT_NAMES
    batch, where = verification_batch(loaded)
    _, mask, _ = batch
    reference = torch_reference(loaded)
    feed = {k: torch.from_numpy(v) for k, v in zip(INPUT_NAMES, batch)}
    if loaded.encoder.type_vocab_size == 0:
        del feed["token_type_ids"]
    with torch.no_grad():
        theirs = reference(**feed).last_hidden_state.float().numpy()
    mine = tf_outputs(fmt, output, batch)
    real = mask.astype(bool)[:, :, None]  # padding positions carry no meaning
    diff = float(np.max(np.abs(np.where(real, mine - theirs, 0.0))))
    ok = diff <= tolerance
    print(f"verify: {where}: max |difference| of the last hidden state, transformers (PyTorch) vs {fmt} "
          f"(TensorFlow) = {diff:.3e} (tolerance {tolerance:g}) {'OK' if ok else 'FAILED'}")
    return diff, ok


# ------------------------------------------------------------------------------------------------------------- int8
def calibration_texts(path: str) -> list:
    """The texts of --calibration_file (a pair where a line has a tab), else the built-in sentences."""
    from xtremedistil_tf.errors import DataError
    if not path:
        return list(SENTENCES)
    texts = []
    with fs.open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) > 2:
                raise DataError(path, line_no, f"expected a text or two texts separated by a tab, got {len(parts)} "
                                               "fields")
            if texts and isinstance(texts[0], tuple) != (len(parts) == 2):
                want = "a pair of texts" if isinstance(texts[0], tuple) else "one text"
                raise DataError(path, line_no, f"expected {want} as on the first line (a file holds single texts "
                                               "or pairs, not both)")
            texts.append(tuple(parts) if len(parts) == 2 else parts[0])
    if not texts:
        raise DataError(path, None, "no texts")
    return texts


def agreement(reference, logits, mask, token_level: bool) -> dict:
    """How an export's logits agree with TensorFlow's: the share of equal predictions (argmax; for one output,
    within 1% of the reference's range) over rows, or real tokens, and the largest absolute difference."""
    import numpy as np
    diff = float(np.max(np.abs(logits - reference))) if logits.size else 0.0
    if reference.shape[-1] == 1:
        spread = float(np.ptp(reference)) or 1.0
        same = np.abs(logits - reference)[..., 0] <= 0.01 * spread
    else:
        same = logits.argmax(-1) == reference.argmax(-1)
    if token_level:
        same = same[mask.astype(bool)]
    return {"agreement": float(np.mean(same)), "max_abs_diff": diff}


def write_int8(loaded, args) -> dict:
    """OUTPUT/int8/: the task model in every installed runtime, float and int8, calibrated and checked on the
    calibration texts against the TensorFlow model."""
    import numpy as np

    from xtremedistil_tf.deploy.int8 import INT8_DIR, export_int8
    from xtremedistil_tf.deploy.runtimes import tf_runner
    from xtremedistil_tf.errors import UserError
    from xtremedistil_tf.models.encoder import INPUT_NAMES
    from xtremedistil_tf.models.heads import TOKEN_KINDS
    model = loaded.model
    if model is loaded.encoder:
        raise UserError(f"--export_int8: {loaded.source} has no task head (int8 exports are of task models)")
    if not loaded.tokenizer:
        raise UserError(f"--export_int8: {loaded.source} has no tokenizer files to encode the calibration texts")
    length = min(args.seq_len, loaded.encoder.max_seq_len)
    texts = calibration_texts(args.calibration_file)
    pairs = isinstance(texts[0], tuple)
    first = [t[0] for t in texts] if pairs else texts
    second = [t[1] for t in texts] if pairs else None
    tok = _load_tokenizer(loaded.tokenizer)
    enc = tok(first, second, padding=True, truncation=True, max_length=length, return_tensors="np")
    arrays = {n: np.asarray(enc.get(n, np.zeros_like(enc["input_ids"])), np.int32) for n in INPUT_NAMES}
    if loaded.encoder.type_vocab_size == 0:
        arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    token_level = model.kind in TOKEN_KINDS
    reference = tf_runner(model)(arrays)
    folder = fs.join(args.output, INT8_DIR)
    result = export_int8(model, folder, length=length, num_labels=model.num_labels, token_level=token_level,
                         calibration=arrays, splits={"calibration": arrays}, metric="agreement",
                         score=lambda _, logits: agreement(reference, logits, arrays["attention_mask"], token_level))
    for runtime, info in sorted(result["runtimes"].items()):
        if "skipped" in info:
            print(f"int8: {runtime} skipped ({info['skipped']})")
            continue
        for variant, m in info["models"].items():
            c = m["calibration"]
            print(f"int8: {runtime} {variant}: {m['bytes'] / 1e6:.1f} MB, agreement with TensorFlow "
                  f"{c['agreement']:.3f} (max |logit difference| {c['max_abs_diff']:.2e}) on {len(texts)} texts, "
                  f"{m['latency_ms']['1']:.2f} / {m['latency_ms']['32']:.1f} ms at batch 1 / 32")
    print(f"wrote int8 exports to {folder}")
    return result


# -------------------------------------------------------------------------------------------------------------- main
def _looks_missing(path: str) -> bool:
    """A path (local-looking, or with a scheme) that does not exist (a hub id `org/name` is left to the loader)."""
    if fs.exists(path) or fs.exists(path + ".index"):
        return False
    return fs.is_remote(path) or path.startswith((".", "/", "~")) or os.path.isabs(path) or path.count("/") > 1


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies under it (absolute local paths, or URLs compared as they are)."""
    if fs.is_remote(path) or fs.is_remote(folder):
        path, folder = path.rstrip("/"), folder.rstrip("/")
        return path == folder or path.startswith(folder + "/")
    return path == folder or path.startswith(folder + os.sep)


def preflight(args) -> None:
    """Checks that need no TensorFlow, so that a wrong path fails in a fraction of a second."""
    from xtremedistil_tf.errors import UserError
    if _looks_missing(args.input):
        raise UserError(f"--input {args.input}: no such file or folder")
    if args.tolerance < 0:
        raise UserError(f"--tolerance must be >= 0, got {args.tolerance}")
    if args.calibration_file and not args.export_int8:
        raise UserError("--calibration_file is for --export_int8")
    if args.calibration_file and not fs.exists(args.calibration_file):
        raise UserError(f"--calibration_file {args.calibration_file}: no such file")
    if args.seq_len < 4:
        raise UserError(f"--seq_len must be at least 4, got {args.seq_len}")
    if _inside(fs.abspath(args.input), fs.abspath(args.output)):
        raise UserError(f"--output {args.output} would replace the input")
    if args.verify:
        import importlib.util
        absent = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if absent:
            raise UserError(f"--verify needs {' and '.join(absent)} (pip install torch==2.13.0 'transformers>=5,<6')")


def _stderr_line(fmt: str, *args) -> None:
    print(fmt % args, file=sys.stderr, flush=True)


def run(args) -> int:
    """Loads --input, writes --output in --format, and verifies it if asked; returns the exit code."""
    preflight(args)
    from xtremedistil_tf.convert.export import export_hf, export_saved_model, load_any, save_keras
    from xtremedistil_tf.progress import make_progress
    steps = ["load", "export"] + (["int8"] if args.export_int8 else []) + (["verify"] if args.verify else [])
    # A line after each finished step, not before: a failing step leaves only the error line on stderr.
    progress = make_progress(args.progress, log_every=1, emit=_stderr_line)
    progress.start(len(steps), f"convert {args.input} to {args.format} ({', '.join(steps)})")
    try:
        loaded = load_any(args.input, allow_pickle=args.allow_pickle)
        if loaded.tokenizer:
            _check_tokenizer_fits(loaded)
        model = loaded.model
        if loaded.unused:
            print(f"note: {len(loaded.unused)} head weights in {loaded.source} are not used "
                  f"({', '.join(sorted(loaded.unused)[:5])}{' ...' if len(loaded.unused) > 5 else ''})",
                  file=sys.stderr)
        progress.update(1)
        if args.format == "hf":
            export_hf(model, args.output, tokenizer=loaded.tokenizer, label_names=loaded.label_names,
                      overwrite=args.overwrite)
        elif args.format == "saved_model":
            export_saved_model(model, args.output, tokenizer=loaded.tokenizer, overwrite=args.overwrite)
        else:
            save_keras(model, args.output, tokenizer=loaded.tokenizer, overwrite=args.overwrite,
                       extra={"label_names": loaded.label_names} if loaded.label_names else None)
        progress.update(2)
        enc = loaded.encoder
        print(f"wrote {args.format} to {args.output}: {type(model).__name__} ({enc.architecture}, "
              f"{enc.num_layers} layers, hidden {enc.hidden_size}) from {loaded.format} {loaded.source}")
        if args.export_int8:
            write_int8(loaded, args)
            progress.update(3)
        if args.verify:
            _, ok = verify(loaded, args.format, args.output, args.tolerance)
            progress.update(len(steps))
            return EXIT_OK if ok else EXIT_MISMATCH
        return EXIT_OK
    finally:
        progress.finish()


def main(argv=None) -> int:
    """The entry point: `run` with every failure turned into one line on stderr and exit code 2."""
    args = parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        if not args.verbose and (fs.is_remote(args.input) or fs.is_remote(args.output)):
            start_tensorflow_quietly()  # the preflight's checks of a remote path go through TensorFlow
        preflight(args)
        if not args.verbose:
            start_tensorflow_quietly()
        try:
            from absl import logging
            logging.set_verbosity(logging.INFO if args.verbose else logging.ERROR)
        except ImportError:
            pass
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - one line for the user; the traceback with --verbose
        if args.verbose:
            import traceback
            traceback.print_exc()
        message = " | ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        from xtremedistil_tf.errors import UserError
        prefix = "error" if isinstance(e, UserError) else f"error ({type(e).__name__})"
        print(f"{prefix}: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
