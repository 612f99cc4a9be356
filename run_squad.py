"""Fine-tune and evaluate an encoder for extractive question answering (SQuAD v1.1 / v2.0), scored with the
official SQuAD evaluation.

  python run_squad.py --task squad --model <HF folder | hub id | distilled model_dir> \
      --train_file train-v1.1.json --dev_file dev-v1.1.json --output_dir runs/squad
  python run_squad.py --task squad_v2 --model <...> --output_dir runs/squad2      # TFDS squad/v2.0

Writes metrics.json, run.log, predictions.json (and null_odds.json for v2.0) and the fine-tuned model (hf/ as
*ForQuestionAnswering, saved_model/, keras/). See `--helpfull` for every flag.
"""
import sys

from xtremedistil_tf.cli import quiet_start

quiet_start()  # before TensorFlow is imported

from absl import app, flags, logging  # noqa: E402

from xtremedistil_tf.apps.squad import SquadConfig  # noqa: E402
from xtremedistil_tf.cli import config_from_flags, define_config_flags, run_main  # noqa: E402

define_config_flags(SquadConfig)


def _main(argv):
    from xtremedistil_tf.apps.squad import run_squad
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_squad(config_from_flags(SquadConfig))


def main(argv):
    logging.set_verbosity(logging.INFO)
    sys.exit(run_main(_main, argv, flags.FLAGS.verbose))


if __name__ == "__main__":
    app.run(main)
