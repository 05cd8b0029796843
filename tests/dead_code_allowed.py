"""What vulture cannot see being used: names that Hydra, Optuna, pytest, Keras and MLflow call or
read by name (tests/test_dead_code.py). Config dataclass fields are allowed there by rule."""
# ruff: noqa: B018
from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# Hydra: callbacks named in conf/config.yaml, the methods Hydra calls on them, a launcher's
# task function argument, a plugin config attribute, the module __getattr__ Python calls
_.CheckFirst, _.BatchSizeReport, _.SweepSummary, _.RecordStudy
_.on_run_start, _.on_multirun_start, _.on_multirun_end, _.on_job_start
_.job_config
_.object_store_memory
_.__getattr__
# Keras: callback hooks, a layer's shape inference, a pyfunc wrapper's hook
_.on_train_begin, _.on_train_end, _.on_epoch_begin, _.on_epoch_end, _.on_test_begin
_.compute_output_shape
_.get_model_call_method
# MLflow: a keyword save_model must take (and drop), a private attribute the tests reset
_.validate_serving_input
_._active_experiment_id
# called from a test's script, run in a fresh process
_.tf_threads
# pytest: hooks, marks, autouse fixtures and fixtures requested by name
_.pytest_collection_modifyitems, _.pytest_runtest_teardown, _.pytest_sessionfinish, _.pytestmark
_.fresh_interrupts, _.fresh_stop, _.no_sweep_env, _.private_study_index, _.read_only_disk
