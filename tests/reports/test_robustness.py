"""The robustness summary every sweep ends with, read back from a study's trials."""

from __future__ import annotations

import json
import warnings

import optuna
import pytest
from hydra_plugins.optuna_mlflow_sweeper.results import add_to_html_report, write_html_report
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from mnist_sweep.reports import references, robustness

REFERENCE = {"dense": {"test_accuracy": 0.95, "test_accuracy_noise_0.5": 0.80},
             "cnn": {"test_accuracy": 0.97, "test_accuracy_noise_0.5": 0.85}}


def _trial(value, clean, noisy, state=TrialState.COMPLETE, values=None):
    attrs = {"val_accuracy": value if values is None else values[0], "test_accuracy": clean,
             "test_accuracy_noise_0.5": noisy, "test_accuracy_noise_1": noisy / 2,
             "test_accuracy_noise_mean": 0.75 * noisy}
    return create_trial(state=state, value=None if values else value, values=values,
                        params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-4, 1.0)},
                        user_attrs=attrs)


def _study(*trials, directions=("maximize",)):
    study = optuna.create_study(directions=list(directions), study_name="s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_accuracy", "val_accuracy_noise_0.5"][: len(directions)])
    for t in trials:
        study.add_trial(t)
    return study


def test_the_best_trials_noisy_accuracy_is_shown_beside_its_objective():
    study = _study(_trial(0.990, 0.989, 0.594), _trial(0.985, 0.984, 0.90))
    text = robustness.summary_text(study, REFERENCE)
    header, best, dense, cnn = text.splitlines()[1:5]
    assert header.split()[-5:] == ["clean", "f=0.5", "f=1", "f", "mean"]
    assert best.startswith("trial 0 (val_accuracy=0.9900)")
    assert best.split()[-4:] == ["0.9890", "0.5940", "0.2970", "0.4455"]
    assert dense.startswith("notebook dense") and cnn.startswith("notebook cnn")
    # a clean-accuracy search says what its best model loses under noise against the notebook's
    assert text.splitlines()[-1] == ("at f=0.5 the best trial keeps 0.5940: notebook dense "
                                     "0.8000 (-0.2060), notebook cnn 0.8500 (-0.2560)")


def test_parent_metrics_name_the_best_trial_and_the_references():
    study = _study(_trial(0.990, 0.989, 0.594), _trial(0.985, 0.984, 0.90))
    metrics = robustness.parent_metrics(study, REFERENCE)
    assert metrics["best.val_accuracy"] == 0.990
    assert metrics["best.test_accuracy"] == 0.989
    assert metrics["best.test_accuracy_noise_0.5"] == 0.594
    assert metrics["reference.cnn.test_accuracy_noise_0.5"] == 0.85


def test_the_parent_tables_the_comparison():
    study = _study(_trial(0.990, 0.989, 0.594), _trial(0.985, 0.984, 0.90))
    table = robustness.comparison_table(study, REFERENCE)
    assert table["model"] == ["trial 0", "notebook dense", "notebook cnn"]
    assert table["test_accuracy_noise_0.5"] == [0.594, 0.80, 0.85]
    assert table["val_accuracy"][0] == 0.990


def test_a_multi_objective_study_shows_its_pareto_set_and_a_clean_vs_noisy_plot():
    study = _study(_trial(None, 0.99, 0.95, values=[0.99, 0.95]),
                   _trial(None, 0.98, 0.97, values=[0.98, 0.97]),
                   _trial(None, 0.97, 0.90, values=[0.97, 0.90]),  # dominated
                   directions=("maximize", "maximize"))
    text = robustness.summary_text(study, None)
    assert "trial 0 (val_accuracy=0.9900, val_accuracy_noise_0.5=0.9500)" in text
    assert "trial 1 (" in text and "trial 2 (" not in text
    assert robustness.parent_metrics(study, None) == {}  # no single best to name
    figure = robustness.clean_vs_noisy(study, REFERENCE)
    assert figure is not None and figure.axes[0].get_xlabel() == "clean test accuracy"


def test_trials_at_chance_are_counted_not_drawn_in_the_clean_vs_noisy_plot():
    study = _study(_trial(None, 0.99, 0.95, values=[0.99, 0.95]),
                   _trial(None, 0.1135, 0.1135, values=[0.1126, 0.1126]),  # learned nothing
                   directions=("maximize", "maximize"))
    [ax] = robustness.clean_vs_noisy(study, REFERENCE).axes
    assert ax.get_xlim()[0] > 0.5  # the axes span the models worth comparing
    labels = ax.get_legend_handles_labels()[1]
    assert "trials (1 at chance, not shown)" in labels
    alone = _study(_trial(None, 0.1135, 0.1135, values=[0.1126, 0.1126]),
                   directions=("maximize", "maximize"))
    assert robustness.clean_vs_noisy(alone, None).axes[0].get_xlim()[0] < 0.2  # all it has


def test_no_complete_trial_is_said_in_one_line():
    study = _study(_trial(0.5, 0.5, 0.5, state=TrialState.PRUNED))
    assert robustness.summary_text(study, REFERENCE) == "robustness: no complete trial"
    assert robustness.clean_vs_noisy(study, None) is None


def test_the_notebook_reference_is_read_from_the_cache_for_its_setting(tmp_path):
    data = {"source": "auto", "dir": None, "val_size": 1000, "limit_train": 600,
            "cache_dir": str(tmp_path)}
    ev = {"noise_levels": [0.5], "noise_seed": 0}
    key = json.dumps(references.settings(data, ev), sort_keys=True)
    references.cache_file(data).write_text(json.dumps({key: REFERENCE}))
    assert references.notebook_reference(data, ev) == REFERENCE  # no training: it is cached
    # another noise setting is another key
    other = json.dumps(references.settings(data, {**ev, "noise_seed": 1}), sort_keys=True)
    assert other != key


@pytest.mark.slow
def test_the_notebook_reference_is_measured_once_and_cached(tmp_path, mnist_cache):
    data = {"source": "cache", "dir": None, "val_size": 500, "limit_train": 300,
            "cache_dir": str(mnist_cache)}
    ev = {"noise_levels": [0.5], "noise_seed": 0, "batch_size": 10000, "misclassified": 0}
    measured = references.notebook_reference(data, ev)
    assert set(measured) == {"dense", "cnn"}
    for metrics in measured.values():
        assert 0.1 < metrics["test_accuracy"] <= 1 and "test_accuracy_noise_0.5" in metrics
    cached = json.loads(references.cache_file(data).read_text())
    assert json.dumps(references.settings(data, ev), sort_keys=True) in cached


def test_the_sweep_report_gains_an_interactive_clean_vs_noisy_figure(tmp_path):
    study = _study(_trial(0.990, 0.989, 0.594), _trial(0.985, 0.984, 0.90),
                   _trial(0.980, 0.975, 0.85),  # dominated by trial 1: off the front
                   _trial(0.112, 0.1135, 0.1135))  # learned nothing: counted, not drawn
    figure = robustness.clean_vs_noisy_plotly(study, REFERENCE)
    traces = {trace.name: trace for trace in figure.data}
    trials = traces["trials (1 at chance, not shown)"]
    assert trials.text == ("trial 0", "trial 1", "trial 2")  # hover names the trial
    front = traces["front (clean vs noisy)"]
    assert list(zip(front.x, front.y, strict=True)) == [(0.984, 0.90), (0.989, 0.594)]
    assert traces["best (objective)"].text == ("trial 0",)
    assert (traces["notebook cnn"].x, traces["notebook cnn"].y) == ((0.97,), (0.85,))
    assert figure.layout.yaxis.title.text == "test accuracy at f=0.5"

    written = write_html_report(study, tmp_path)  # as the sweeper writes it
    report = add_to_html_report(tmp_path, [("Clean vs noisy", figure)])
    assert report == written == tmp_path / "sweep_report.html"
    text = report.read_text()
    assert text.count("plotly.js v") == 1 and text.rstrip().endswith("</body></html>")
    sections = text.split("<section>")[1:]
    assert sections[-1].count('class="plotly-graph-div"') == 1
    assert '"name":"front (clean vs noisy)"' in sections[-1]
    assert robustness.clean_vs_noisy_plotly(_study(), None) is None
