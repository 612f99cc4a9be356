"""Fine-tune and evaluate an encoder on a GLUE task or on NER, with the benchmarks' own metrics.

  python run_glue.py --task cola --model <HF folder | hub id | distilled model_dir> \
      --data_dir ../shared/data/glue/CoLA --output_dir runs/cola
  python run_glue.py --task ner --model <...> --data_dir ../shared/data/conll2003 --output_dir runs/ner
  python run_glue.py --task sst2 --model <...> --output_dir runs/sst2      # TFDS glue/sst2

Writes metrics.json, run.log, the fine-tuned model (hf/, saved_model/, keras/) and the test predictions
(submission/<Task>.tsv for GLUE, test_predictions.txt for NER). See `--helpfull` for every flag.
"""
import sys

from xtremedistil_tf.cli import quiet_start

quiet_start()  # before TensorFlow is imported

from absl import app, flags, logging  # noqa: E402

from xtremedistil_tf.apps.glue import GlueConfig  # noqa: E402
from xtremedistil_tf.cli import config_from_flags, define_config_flags, run_main  # noqa: E402

define_config_flags(GlueConfig)


def _main(argv):
    from xtremedistil_tf.apps.glue import run_glue
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    run_glue(config_from_flags(GlueConfig))


def main(argv):
    logging.set_verbosity(logging.INFO)
    sys.exit(run_main(_main, argv, flags.FLAGS.verbose))


if __name__ == "__main__":
    app.run(main)
