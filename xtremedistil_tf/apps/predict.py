"""Predict with or evaluate a distilled model (the original's run_xtreme_distil_predict.py):

  python -m xtremedistil_tf.apps.predict --model_dir runs/sst2 --pred_file texts.tsv --do_predict
  python -m xtremedistil_tf.apps.predict --model_dir runs/sst2 --do_eval
"""
import sys

from absl import app, flags, logging

from xtremedistil_tf import fs
from xtremedistil_tf.cli import quiet_start, run_main

flags.DEFINE_string("model_dir", None, "a finished run_distillation.py model_dir")
flags.DEFINE_string("pred_file", None, "file to predict (one text, pair or word list a line)")
flags.DEFINE_string("output", None, "where to write predictions (default: model_dir/predictions.tsv)")
flags.DEFINE_bool("do_predict", False, "write predictions for --pred_file")
flags.DEFINE_bool("do_eval", False, "score the task's dev and test splits")
flags.DEFINE_bool("use_finetuned", False, "use xtremedistil-ft weights from continued fine-tuning")
flags.DEFINE_integer("batch_size", 128, "batch size")
flags.DEFINE_bool("verbose", False, "show tracebacks")
FLAGS = flags.FLAGS


def _main(argv):
    from xtremedistil_tf.distill.distilled import FT_WEIGHTS, WEIGHTS, DistilledModel
    from xtremedistil_tf.errors import ConfigError
    if not FLAGS.model_dir:
        raise ConfigError("--model_dir is required")
    if not (FLAGS.do_predict or FLAGS.do_eval):
        raise ConfigError("nothing to do: pass --do_predict (with --pred_file) and/or --do_eval")
    if FLAGS.do_predict and not FLAGS.pred_file:
        raise ConfigError("--do_predict needs --pred_file")
    model = DistilledModel(FLAGS.model_dir, weights=FT_WEIGHTS if FLAGS.use_finetuned else WEIGHTS)
    if FLAGS.do_eval:
        print(model.evaluate())
    if FLAGS.do_predict:
        model.predict_file(FLAGS.pred_file, FLAGS.output or fs.join(FLAGS.model_dir, "predictions.tsv"),
                           FLAGS.batch_size)


def main(argv):
    """absl entry point: predicts and/or evaluates, exiting with run_main's code (2 on a user error)."""
    quiet_start()
    logging.set_verbosity(logging.INFO)
    sys.exit(run_main(_main, argv, FLAGS.verbose))


if __name__ == "__main__":
    app.run(main)
