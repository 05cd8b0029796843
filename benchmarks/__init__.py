"""Speed benchmarks of mnist-sweep against the baselines a user would write: `python -m benchmarks`.

Not part of the installed package: they measure it from the repository.
"""
