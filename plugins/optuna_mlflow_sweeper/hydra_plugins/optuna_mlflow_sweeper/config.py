"""Config schema of the `optuna_mlflow` sweeper, registered in Hydra's ConfigStore.

Compatible with Hydra's `optuna` sweeper (sampler group, direction, study_name, storage, n_trials,
n_jobs, max_failure_rate, params, custom_search_space): a user moves over by changing the sweeper
name. Added: the `pruner` group, timeout, enqueue, heartbeat/grace period, progress, mlflow.

Imported by Hydra's plugin scanner in every Hydra process, so this module imports nothing heavy.
No `from __future__ import annotations` here: the scanner runs this module before it is in
sys.modules, and dataclasses cannot resolve string annotations of such a module.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SWEEPER_TARGET = "hydra_plugins.optuna_mlflow_sweeper.optuna_mlflow_sweeper.OptunaMlflowSweeper"
PROVIDER = "optuna_mlflow_sweeper"


# ---- samplers (group hydra/sweeper/sampler); null means "optuna's default" for that argument ----
@dataclass
class SamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = None
    group: bool = False
    constant_liar: bool = True
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GridSamplerConfig(SamplerConfig):
    # The grid is built from `params` (choices and stepped ranges) unless search_space is given.
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    search_space: dict[str, Any] | None = None


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False


# ---- pruners (group hydra/sweeper/pruner) ----
@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig(MedianPrunerConfig):
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class MlflowConfig:
    enabled: bool = True
    # $MLFLOW_TRACKING_URI wins; else this; else sqlite:///mlflow.db in the working directory
    tracking_uri: str | None = None
    # null: the study name
    experiment: str | None = None
    # the best trial's logged model in the Model Registry, alias `champion` (each Pareto trial's
    # for several objectives): true = under the study's name, a string = under that name,
    # null/false = not registered
    registered_model_name: Any = True
    # several objectives: the trial whose model gets the `champion` alias (null: none)
    champion_trial: int | None = None
    # the child run's metrics copied to the model version as tags (fnmatch patterns)
    version_metrics: list[str] = field(default_factory=lambda: ["test_*"])


@dataclass
class WarmStartConfig:
    # an earlier study whose best trials this sweep tries first (null: no warm start)
    study_name: str | None = None
    # its storage (null: this sweep's own)
    storage: str | None = None
    # how many of its best COMPLETE trials (those that fit this search space) are enqueued
    top_k: int = 5


@dataclass
class SweeperSettings:
    """The sweeper's own keys, with their defaults: what the plugin class is constructed with."""

    # filled by the defaults list (MISSING, unlike None, does not override what it merges in)
    sampler: Any = MISSING
    pruner: Any = MISSING
    # minimize | maximize | a list of them (multi-objective)
    direction: Any = "minimize"
    # what each objective is called (Optuna's metric names), one per direction; null: "value"
    metric_names: Any = None
    # null: sqlite:///<hydra.sweep.dir>/optuna.db (persistent: the same command resumes the study)
    storage: str | None = None
    # null: the app's job name
    study_name: str | None = None
    # total budget of the study, shared by every process running against the same storage
    # (null: the whole grid with the grid sampler, or no limit but the timeout)
    n_trials: int | None = 20
    # workers, each a warm process running one trial after another on the shared study (no batch
    # barrier): 1 = this process; N = N local processes, or N jobs of the configured launcher
    # (joblib, submitit, ray: every worker runs many trials)
    n_jobs: int = 1
    gpus: list[str] | None = None
    """The GPUs the workers of this machine share out (`CUDA_VISIBLE_DEVICES` ids: `[0, 1]`, or
    UUIDs), round-robin: each worker its own while there are enough, else worker i shares device
    i mod the count. null: the GPUs the command sees (`CUDA_VISIBLE_DEVICES`, else
    `nvidia-smi -L`); `[]`: none assigned, every worker sees what the command sees. Under
    `hydra/launcher=ray` each worker task asks Ray for its share of the cluster's GPUs instead
    (`hydra.launcher.ray.remote.num_gpus` overrides it); on SLURM the scheduler's settings
    decide."""
    max_failure_rate: float = 0.5
    """Stop the sweep when more than this share of its trials failed, counted over at least
    min(n_trials, 5) trials: a first trial that diverges does not stop it, three failures in the
    first five do (more than 0.5 of 5, whatever the next two do); 0.0 stops at the first."""
    # override key -> override grammar: interval(a,b), int(interval(a,b)), range(a,b,step=s),
    # choice(...), tag(log, interval(a,b)); a plain value is a fixed override
    params: dict[str, Any] | None = field(default_factory=dict)
    # dotted path of fn(cfg, trial) -> dict | None: extra suggestions and overrides
    custom_search_space: str | None = None
    # dotted path of fn(cfg) raising on a bad app config (e.g. a misspelled objective): called on
    # one composed trial config before the study or any run exists
    validate: str | None = None
    # seconds; no new batch starts after it (null: none)
    timeout: float | None = None
    # list of {override_key: value}: tried first, enqueued once per study
    enqueue: list[Any] = field(default_factory=list)
    # seconds between heartbeats of running trials (null disables stale-trial detection)
    heartbeat_interval: int | None = 60
    # seconds without heartbeat after which a running trial is failed and retried (null: 2x)
    grace_period: int | None = None
    # how often a trial whose process died is retried
    max_retry: int = 1
    # resuming a study with other fixed overrides than it started with (another data size, say)
    # mixes conditions in one study: refused, naming what differs, unless this is true (or lists
    # the keys that may change, e.g. [progress])
    allow_changed_overrides: Any = False
    # a line per trial and per batch, links at the end; false: errors and the answer only
    progress: bool = True
    # seconds a trial may take after SIGTERM to finish its epoch and checkpoint (schedulers send
    # SIGTERM before a preemption: SLURM, Ray, Kubernetes); then it is stopped wherever it is
    stop_grace_period: float = 60.0
    # begin where an earlier study left off: its best params first (enqueued once per study)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


@dataclass
class OptunaMlflowSweeperConf(SweeperSettings):
    """`hydra/sweeper=optuna_mlflow`: the settings plus what Hydra needs to build the plugin."""

    _target_: str = SWEEPER_TARGET
    # sampler/pruner arrive as configs; the sweeper instantiates them (grid needs the search space)
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])


SAMPLERS: dict[str, type] = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "grid": GridSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "gp": GPSamplerConfig,
    "qmc": QMCSamplerConfig,
}
PRUNERS: dict[str, type] = {
    "none": NopPrunerConfig,
    "median": MedianPrunerConfig,
    "percentile": PercentilePrunerConfig,
    "successive_halving": SuccessiveHalvingPrunerConfig,
    "hyperband": HyperbandPrunerConfig,
}


def register_configs() -> None:
    """The sweeper, its samplers and its pruners as config groups under hydra/sweeper."""
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="optuna_mlflow", node=OptunaMlflowSweeperConf,
             provider=PROVIDER)
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
    for name, node in PRUNERS.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider=PROVIDER)
