"""mnist-sweep: reproducible, tracked hyperparameter sweeps of Keras MNIST classifiers.

Kept free of heavy imports: the Hydra sweeper plugin imports this package in processes that never
train, and `train.backend` must be chosen before Keras is first imported.
"""

__version__ = "0.1.0"
