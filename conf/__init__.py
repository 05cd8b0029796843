"""The composed configs of mnist-sweep (Hydra: pkg://mnist_sweep.conf); YAML only."""
