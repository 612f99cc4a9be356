"""The command-line applications: run_glue, predict, finetune (thin: flags in, one library call, exit code out)."""
