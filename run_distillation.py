"""Distil a fine-tuned transformer into a small BERT student (XtremeDistil), with the original's flags.

  python run_distillation.py --task ../shared/data/tasks/sst2-small --model_dir runs/sst2 \
      --transfer_file ../shared/data/tasks/sst2-small/transfer.tsv --pt_teacher_checkpoint <teacher folder> ...

See README.md for the reference run and `--helpfull` for every flag.
"""
import sys

from xtremedistil_tf.cli import quiet_start

quiet_start()  # before TensorFlow is imported

from absl import app, flags, logging  # noqa: E402

from xtremedistil_tf.cli import config_from_flags, define_config_flags, run_main  # noqa: E402
from xtremedistil_tf.distill.config import DistilConfig  # noqa: E402

define_config_flags(DistilConfig)


def _main(argv):
    from xtremedistil_tf.distill.runner import run_distillation
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_distillation(config_from_flags(DistilConfig))


def main(argv):
    logging.set_verbosity(logging.INFO)
    sys.exit(run_main(_main, argv, flags.FLAGS.verbose))


if __name__ == "__main__":
    app.run(main)
