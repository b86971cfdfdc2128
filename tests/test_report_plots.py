"""Report figures: a colour per method, a marker per model, Pareto fronts, error bars, sweep figures."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_hex
from record_factory import make_record, task

from bench.report import plots, sweeps
from bench.report.figure import Style
from bench.report.plots import draw_plots, pareto_front
from bench.report.tables import task_rows


@pytest.fixture
def figures(monkeypatch) -> dict:
    """The figures drawn, by file name, kept open instead of written."""
    drawn: dict = {}

    def keep(fig, path):
        drawn[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save", keep)
    monkeypatch.setattr(sweeps, "save", keep)
    return drawn


def sweep_records() -> list[dict]:
    """nemo.alpha swept on two models, three seeds each; mwt at two thresholds; the standard model."""
    records = []
    for seed in range(3):
        for alpha in (0.5, 1.0, 2.0):
            for model, family in (("simcnn", "cnn"), ("vit_s", "vit")):
                acc = 0.9 + alpha / 50 + seed / 100
                records.append(make_record("nemo", seed, model=model, family=family, hparams={"alpha": alpha},
                                           cohesion=0.8 + alpha / 20, coupling=0.4 - alpha / 10,
                                           tasks=[task([0, 1], acc, weights=0.2 + alpha / 5)]))
        for threshold in (0.8, 0.9):
            records.append(make_record("mwt", seed, threshold=threshold,
                                       tasks=[task([0, 1], 0.8 + threshold / 10, weights=threshold / 2)]))
        records.append(make_record("standard", seed, tasks=[task([0, 1], 0.95, weights=1.0)]))
    return records


def data_lines(ax) -> dict:
    """Each labelled series of an axis (plain lines and the data line of error bars) by its label."""
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    lines.update({c.get_label(): c.lines[0] for c in ax.containers if c.lines[0] is not None})
    return lines


def series(ax) -> dict[str, tuple[str, str]]:
    """Each labelled series of an axis: its colour and marker."""
    return {label: (to_hex(line.get_color()), line.get_marker()) for label, line in data_lines(ax).items()}


def test_every_figure_the_records_allow(figures, tmp_path):
    paths = draw_plots(task_rows(sweep_records()), tmp_path)
    assert [p.name for p in paths] == ["size_accuracy.png", "methods.png", "threshold_sweep.png",
                                       "sweep_nemo.alpha.png"]
    assert set(figures) == {p.name for p in paths}


def test_size_accuracy_colours_methods_marks_models_and_draws_pareto_fronts(figures, tmp_path):
    draw_plots(task_rows(sweep_records()), tmp_path)
    (ax,) = figures["size_accuracy.png"].axes
    lines = series(ax)
    nemo_cnn, nemo_vit = lines["nemo / simcnn:width=0.25"], lines["nemo / vit_s:width=0.25"]
    mwt = lines["mwt / simcnn:width=0.25"]
    assert nemo_cnn[0] == nemo_vit[0] != mwt[0]  # colour per method
    assert nemo_cnn[1] == mwt[1] != nemo_vit[1]  # marker per model
    assert lines["nemo: Pareto front"][0] == nemo_cnn[0] and "mwt: Pareto front" in lines  # mwt: two thresholds
    assert "standard: Pareto front" not in lines  # one point is no front
    assert ax.get_xlabel() == "module weights, % of the standard model's" and "%" in ax.get_ylabel()
    assert ax.containers and any(c.has_yerr for c in ax.containers)  # three seeds: error bars


def test_twelve_series_stay_distinct():
    methods = ["standard", "mwt", "nemo"]
    models = ["simcnn", "rescnn", "vgg16", "vit_s"]
    style = Style(methods, models)
    pairs = {(to_hex(style.of(m, model)["color"]), style.of(m, model)["marker"]) for m in methods for model in models}
    assert len(pairs) == 12 and len({to_hex(c) for c in style.colours.values()}) == 3


def test_sweep_figure_plots_the_swept_value_against_the_papers_figures(figures, tmp_path):
    draw_plots(task_rows(sweep_records()), tmp_path)
    fig = figures["sweep_nemo.alpha.png"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["nemo.alpha"] * 4
    assert ["units kept" in fig.axes[0].get_ylabel(), "cohesion" in fig.axes[1].get_ylabel(),
            "coupling" in fig.axes[2].get_ylabel(), "module accuracy" in fig.axes[3].get_ylabel()] == [True] * 4
    lines = data_lines(fig.axes[3])
    assert set(lines) == {"nemo / simcnn:width=0.25", "nemo / vit_s:width=0.25"}  # one line per model
    cnn = lines["nemo / simcnn:width=0.25"]
    assert list(cnn.get_xdata()) == [0.5, 1.0, 2.0]
    assert list(cnn.get_ydata()) == pytest.approx([92.0, 93.0, 95.0])  # mean over seeds 0-2, in %
    coupling = data_lines(fig.axes[2])["nemo / simcnn:width=0.25"]
    assert list(coupling.get_ydata()) == pytest.approx([0.35, 0.3, 0.2])


def test_threshold_sweep_draws_only_configurations_with_several_thresholds(figures, tmp_path):
    draw_plots(task_rows(sweep_records()), tmp_path)
    left, _ = figures["threshold_sweep.png"].axes
    ((label, line),) = data_lines(left).items()
    assert label == "mwt / simcnn:width=0.25" and list(line.get_xdata()) == [0.8, 0.9]
    assert "threshold" in left.get_xlabel()


def test_written_files_and_nothing_to_draw(tmp_path):
    assert draw_plots(task_rows([make_record("mwt", error="boom")]), tmp_path / "none") == []
    paths = draw_plots(task_rows([make_record("mwt"), make_record("standard")]), tmp_path / "some")
    assert [p.name for p in paths] == ["size_accuracy.png", "methods.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_pareto_front():
    sizes = [50, 30, 40, 20, 45]
    accuracies = [97, 96, 95, 90, 97]
    assert pareto_front(sizes, accuracies) == [(20, 90), (30, 96), (45, 97)]
