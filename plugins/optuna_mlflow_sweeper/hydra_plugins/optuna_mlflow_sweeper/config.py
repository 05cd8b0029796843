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
    """The Optuna class Hydra instantiates (set by the group's option)."""
    seed: int | None = None
    """Seeds the sampler, so a one-process sweep repeats; each further process derives its own seed
    from it (null: unseeded)."""


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""
    n_startup_trials: int = 10
    """Trials drawn at random (enqueued ones count) before TPE models the results: keep it below
    `n_trials`, or TPE never runs."""
    n_ei_candidates: int = 24
    """Candidates TPE scores by expected improvement for each new trial."""
    multivariate: bool | None = None
    """Model the params jointly rather than one by one (null: Optuna's default, false)."""
    group: bool = False
    """With `multivariate`: model the params that occur together (conditional spaces) as groups."""
    constant_liar: bool = True
    """Count running trials as bad results so parallel workers do not draw the same point."""
    consider_prior: bool | None = None
    """Optuna's TPE `consider_prior` (null: Optuna's default; deprecated in Optuna 4.3+)."""
    prior_weight: float | None = None
    """Weight of the prior in TPE's densities (null: Optuna's default, 1.0)."""
    consider_magic_clip: bool | None = None
    """TPE's heuristic lower bound on kernel widths (null: Optuna's default, true)."""
    consider_endpoints: bool | None = None
    """Let TPE's kernels reach a range's endpoints (null: Optuna's default, false)."""
    warn_independent_sampling: bool | None = None
    """Warn when a param falls back to independent sampling (null: Optuna's default, true)."""


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""


@dataclass
class GridSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GridSampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""
    _partial_: bool = True
    """Built by the sweeper, which adds the grid from `params`."""
    search_space: dict[str, Any] | None = None
    """An explicit grid `{param: [values]}`; null: the grid of `params` (choices and stepped
    ranges)."""


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""
    x0: dict[str, Any] | None = None
    """CMA-ES's starting point `{param: value}` (null: the middle of the space)."""
    sigma0: float | None = None
    """CMA-ES's initial step size (null: Optuna's default, from the ranges)."""
    n_startup_trials: int = 1
    """Trials drawn independently before CMA-ES starts."""
    warn_independent_sampling: bool = True
    """Warn when a param (a categorical one) is sampled independently."""
    consider_pruned_trials: bool = False
    """Let pruned trials' last values feed the search."""
    restart_strategy: str | None = None
    """Optuna's CMA-ES restart strategy (null: none)."""
    popsize: int | None = None
    """Population size for restarts (null: Optuna's default)."""
    inc_popsize: int = -1
    """Factor the population grows by at each restart (-1: Optuna's default)."""
    use_separable_cma: bool = False
    """Separable CMA-ES: a diagonal covariance, cheaper in many dimensions."""
    with_margin: bool = False
    """CMA-ES with margin, for integer and discrete params."""
    lr_adapt: bool = False
    """Adapt CMA-ES's learning rate (for noisy or multimodal objectives)."""


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""
    population_size: int = 50
    """Trials per NSGA-II generation."""
    mutation_prob: float | None = None
    """Chance a param mutates in a child (null: 1 / number of params)."""
    crossover_prob: float = 0.9
    """Chance a child is made by crossover of two parents."""
    swapping_prob: float = 0.5
    """Chance each param is taken from the other parent in a crossover."""


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""
    n_startup_trials: int = 10
    """Trials drawn at random before the Gaussian process models the results."""
    deterministic_objective: bool = False
    """The objective has no noise (the same params always give the same value)."""


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    """The Optuna class Hydra instantiates (set by the group's option)."""
    qmc_type: str = "sobol"
    """The low-discrepancy sequence: `sobol` or `halton`."""
    scramble: bool = False
    """Scramble the sequence (randomized QMC)."""


# ---- pruners (group hydra/sweeper/pruner) ----
@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"
    """The Optuna pruner class (`none`: never prunes)."""


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    """The Optuna pruner class (set by the group's option)."""
    n_startup_trials: int = 5
    """Trials that must finish before any is pruned."""
    n_warmup_steps: int = 0
    """Steps (epochs for mnist-sweep) of a trial before it may be pruned."""
    interval_steps: int = 1
    """Steps between pruning checks."""
    n_min_trials: int = 1
    """Trials that must have reported a step before a trial is judged at it."""


@dataclass
class PercentilePrunerConfig(MedianPrunerConfig):
    _target_: str = "optuna.pruners.PercentilePruner"
    """The Optuna pruner class (set by the group's option)."""
    percentile: float = 25.0
    """Prune a trial below this percentile of the others at the same step (0-100)."""


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    """The Optuna pruner class (set by the group's option)."""
    min_resource: Any = "auto"
    """Steps before the first rung (`auto`: from the first finished trial)."""
    reduction_factor: int = 4
    """Each rung keeps the best 1/reduction_factor of the trials."""
    min_early_stopping_rate: int = 0
    """Rungs skipped at the bottom (0: judge from `min_resource` on)."""
    bootstrap_count: int = 0
    """Trials a rung needs before it judges any."""


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    """The Optuna pruner class (set by the group's option)."""
    min_resource: int = 1
    """Steps before the first rung: with reduction factor 3, trials are judged at 1, 3, 9...
    steps."""
    max_resource: Any = "auto"
    """Steps of a whole trial (`auto`: from the first finished trial); mnist-sweep's step is an
    epoch."""
    reduction_factor: int = 3
    """Each rung keeps the best 1/reduction_factor of the trials."""
    bootstrap_count: int = 0
    """Trials a rung needs before it judges any."""


@dataclass
class MlflowConfig:
    enabled: bool = True
    """Record the sweep in MLflow: a parent run per study, a child run per trial."""
    tracking_uri: str | None = None
    """Where to record; `$MLFLOW_TRACKING_URI` wins, then this, then `sqlite:///mlflow.db` in the
    working folder."""
    experiment: str | None = None
    """The MLflow experiment; null: the study's name."""
    registered_model_name: Any = True
    """Register the best trial's logged model with alias `champion` (every Pareto trial's for
    several objectives): true = under the study's name, a string = under that name, null/false = not
    registered."""
    champion_trial: int | None = None
    """Several objectives: the Pareto trial whose model gets the `champion` alias (null: none)."""
    version_metrics: list[str] = field(default_factory=lambda: ["test_*"])
    """The child run's metrics copied to the model version as tags (fnmatch patterns)."""


@dataclass
class WarmStartConfig:
    study_name: str | None = None
    """An earlier study whose best trials this sweep tries first (null: no warm start)."""
    storage: str | None = None
    """That study's storage URL (null: this sweep's own)."""
    top_k: int = 5
    """How many of its best COMPLETE trials (those that fit this search space) are enqueued."""


@dataclass
class SweeperSettings:
    """The sweeper's own keys, with their defaults: what the plugin class is constructed with."""

    # filled by the defaults list (MISSING, unlike None, does not override what it merges in)
    sampler: Any = MISSING
    """The Optuna sampler, a config group: `tpe`, `random`, `grid`, `cmaes`, `nsgaii`, `gp`, `qmc`
    (`hydra/sweeper/sampler=NAME`)."""
    pruner: Any = MISSING
    """The Optuna pruner, a config group: `none`, `median`, `percentile`, `successive_halving`,
    `hyperband`; it judges the values the task `report()`s."""
    direction: Any = "minimize"
    """`minimize`, `maximize`, or a list of them (one per objective: multi-objective)."""
    metric_names: Any = None
    """A name per objective (Optuna's metric names, shown in progress lines and plots); null:
    `value`."""
    storage: str | None = None
    """The Optuna storage URL (SQLite, PostgreSQL); null: `sqlite:///<hydra.sweep.dir>/optuna.db`,
    so the same command resumes the study."""
    study_name: str | None = None
    """The Optuna study (and MLflow parent run); null: the app's job name."""
    n_trials: int | None = 20
    """The study's total budget, shared by every process on the same storage; null: the whole grid
    (grid sampler) or no limit but `timeout`."""
    n_jobs: int = 1
    """Workers: warm processes each running one trial after another on the shared study (1 = this
    process; N = N local processes, or N jobs of the configured launcher)."""
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
    params: dict[str, Any] | None = field(default_factory=dict)
    """The search space, `{override key: expression}` in Hydra's sweep grammar: `interval(a,b)`,
    `int(interval(a,b))`, `range(a,b,step=s)` (b excluded), `choice(...)`, `tag(log,
    interval(a,b))`; a plain value is fixed."""
    custom_search_space: str | None = None
    """Dotted path of `fn(cfg, trial)` suggesting more params (conditional spaces); it may return
    `{override key: value}` overrides."""
    validate: str | None = None
    """Dotted path of `fn(cfg)` raising on a bad app config (a misspelled objective, say), run on
    one composed trial config before the study or any run exists."""
    timeout: float | None = None
    """Seconds; no trial starts after it (null: none)."""
    enqueue: list[Any] = field(default_factory=list)
    """A list of `{override key: value}`: configs tried first, enqueued once per study."""
    heartbeat_interval: int | None = 60
    """Seconds between heartbeats of running trials (null disables stale-trial detection)."""
    grace_period: int | None = None
    """Seconds without a heartbeat after which a running trial is failed and retried (null: 2 x
    `heartbeat_interval`)."""
    max_retry: int = 1
    """How often a trial whose process died is retried."""
    allow_changed_overrides: Any = False
    """Resume a study with other fixed overrides than it started with: refused (naming what differs)
    unless true, or a list of the keys that may change."""
    progress: bool = True
    """A line per trial and the links at the end; false: errors and the answer only."""
    stop_grace_period: float = 60.0
    """Seconds a trial may take after SIGTERM (or submitit's USR2) to finish its epoch and
    checkpoint; then it is stopped where it is."""
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    """Begin where an earlier study left off: its best params first (below)."""
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    """How the sweep is recorded in MLflow (below)."""


@dataclass
class OptunaMlflowSweeperConf(SweeperSettings):
    """`hydra/sweeper=optuna_mlflow`: the settings plus what Hydra needs to build the plugin."""

    _target_: str = SWEEPER_TARGET
    """The sweeper class Hydra instantiates."""
    _recursive_: bool = False
    """False: the sweeper instantiates the sampler and pruner itself (the grid needs the search
    space)."""
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    """The sampler and pruner groups' defaults: `tpe` and `none`."""


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
