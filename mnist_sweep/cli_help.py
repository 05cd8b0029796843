"""What `mnist-sweep --help` and `--version` say.

The help is Hydra's help template (`hydra.help.template` in conf/config.yaml) filled by the
`mnist_sweep_help` resolver: the config groups and the ready-made sweeps are listed from the
packaged configs, so a new sweep file shows up without editing the help. Only importlib and
the config files are read: no TensorFlow, so both answer at once.
"""

from __future__ import annotations

import platform
import textwrap
from importlib import metadata, resources

from omegaconf import OmegaConf

from mnist_sweep.config import registry as config

RESOLVER = "mnist_sweep_help"
PACKAGES = ("tensorflow", "keras", "optuna", "mlflow", "hydra-core", "optuna-mlflow-sweeper")
HIDDEN_GROUPS = ("hydra",)  # Hydra's own; its sweeper settings are named in the text instead

INTRO = """\
mnist-sweep: hyperparameter sweeps of Keras MNIST classifiers (dense nets and CNNs). Every run is
trained, evaluated on the clean test digits and on noisy copies, and recorded in MLflow.

Usage:
  mnist-sweep [key=value ...]                 one run (e.g. model=cnn train.epochs=3)
  mnist-sweep sweep=NAME [key=value ...]      a ready-made sweep (the same command resumes it)
  mnist-sweep -cd DIR sweep=NAME [...]        a sweep of your own, DIR/sweep/NAME.yaml"""

OUTRO = """\
Sweep settings: hydra.sweeper.n_trials=N (the study's budget), hydra.sweeper.n_jobs=N (workers),
  hydra.sweeper.study_name=S (the study, in multirun/<study>/), progress=false (quiet)
Results: MLflow at tracking.uri (sqlite:///mlflow.db here; a sweep prints the UI links), the best
  model models:/<study>@champion, the study in multirun/<study>/, mnist-sweep-report <study>

Flags:
  --cfg job [--resolve]   print the composed config: every key and its value (--cfg hydra: Hydra's)
  -m, --multirun          sweep (ready-made sweeps need no -m)
  -cd, --config-dir DIR   add DIR to the config path (your own sweep files in DIR/sweep/)
  --info [defaults-tree]  Hydra's view of the config: sources, defaults, plugins
  --version               the versions of mnist-sweep and its key packages
  --hydra-help            Hydra's own help; -sc install=bash: shell completion

Docs: docs/index.md in the mnist-sweep repository (mkdocs serve builds the site): a tutorial for
  your own sweep, the MLflow UI, clusters; every key with its meaning in docs/reference.md."""


def groups() -> list[tuple[str, list[str]]]:
    """(group, options) of conf/, without the typed schemas (the sweeps are listed apart)."""
    found = []
    for folder in sorted(resources.files(config.CONF_PACKAGE).iterdir(), key=lambda f: f.name):
        if folder.is_dir() and folder.name not in HIDDEN_GROUPS and not folder.name.startswith("_"):
            options = sorted(f.name.removesuffix(".yaml") for f in folder.iterdir()
                             if f.name.endswith(".yaml"))
            if options:
                found.append((folder.name, options))
    return found


def sweep_summary(name: str, width: int = 78) -> str:
    """The first sentence of a sweep file's leading comment, shortened to `width`."""
    text = (resources.files(config.SWEEPS_PACKAGE) / f"{name}.yaml").read_text()
    words = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            words.append(line.lstrip("#").strip())
    comment = " ".join(words)
    sentence = comment.split(". ")[0].rstrip(".")
    return textwrap.shorten(sentence, width, placeholder=" ...")


def help_text() -> str:
    """The help, as a Hydra help template. Hydra's `$CONFIG` and `$FLAGS_HELP` are left out on
    purpose: the whole config is `--cfg job`'s, and Hydra's flag lines say Hydra's things
    (`--version`: Hydra's version), so the flags this app answers are listed in OUTRO."""
    sweeps = "\n".join(f"  {name:<18} {sweep_summary(name)}" for name in config.sweep_names())
    listed = "\n".join(f"  {group:<10} {', '.join(options)}" for group, options in groups())
    body = (f"{INTRO}\n\nReady-made sweeps (sweep=NAME):\n{sweeps}\n\n"
            f"Config groups (group=option):\n{listed}\n\n{OUTRO}")
    return body.replace("$", "$$")


def versions() -> str:
    """`mnist-sweep --version`: this package's version and its key packages'."""
    lines = [f"mnist-sweep {_version('mnist-sweep')}"]
    lines += [f"  {name:<22} {_version(name)}" for name in PACKAGES]
    lines.append(f"  {'python':<22} {platform.python_version()}")
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def register() -> None:
    """`${mnist_sweep_help:}` for conf/config.yaml's hydra.help.template."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, help_text)
