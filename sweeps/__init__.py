"""Ready-made sweeps: the `sweep` config group (pkg://mnist_sweep.conf, group sweep)."""
