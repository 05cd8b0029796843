"""The `model` and `train` config groups: building the networks (models), the Keras backend and its
threads (backend), fitting (training) and scoring on clean and noisy test sets (evaluation)."""
