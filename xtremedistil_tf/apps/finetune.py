"""Continued fine-tuning of a distilled model on its task's labelled data (the original's
run_xtreme_distil_ft.py), early-stopped on dev (the original used the last 10% of train):

  python -m xtremedistil_tf.apps.finetune --model_dir runs/sst2 --ft_epochs 3
"""
import sys

from absl import app, flags, logging

from xtremedistil_tf.cli import quiet_start, run_main

flags.DEFINE_string("model_dir", None, "a finished run_distillation.py model_dir")
flags.DEFINE_integer("ft_epochs", 100, "maximum epochs")
flags.DEFINE_integer("patience", 5, "early-stopping patience on dev")
flags.DEFINE_integer("batch_size", 32, "batch size")
flags.DEFINE_float("learning_rate", 3e-5, "Adam learning rate (the original: 3e-5)")
flags.DEFINE_bool("verbose", False, "show tracebacks")
FLAGS = flags.FLAGS


def _main(argv):
    from xtremedistil_tf.distill.distilled import DistilledModel
    from xtremedistil_tf.errors import ConfigError
    if not FLAGS.model_dir:
        raise ConfigError("--model_dir is required")
    model = DistilledModel(FLAGS.model_dir)
    model.fine_tune(epochs=FLAGS.ft_epochs, patience=FLAGS.patience, batch_size=FLAGS.batch_size,
                    learning_rate=FLAGS.learning_rate)
    print(model.evaluate())


def main(argv):
    """absl entry point: runs the fine-tuning and exits with run_main's code (2 on a user error)."""
    quiet_start()
    logging.set_verbosity(logging.INFO)
    sys.exit(run_main(_main, argv, FLAGS.verbose))


if __name__ == "__main__":
    app.run(main)
