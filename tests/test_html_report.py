"""``bench report --format html``: one self-contained page, checked as written and in a real headless Chromium.

The browser test needs Debian's chromium and chromium-driver (``.ci/run`` installs them; CI sets
MODBENCH_REQUIRE_BROWSER=1 so that a missing browser fails there instead of skipping).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser import chromium, console_errors, missing
from console import invoker, run_main
from record_factory import make_record, task, write_records

import bench.report.display

MODELS = {"simcnn": {"width": 0.25}, "vit_s": {"depth": 2, "width": 0.25}}


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """``bench report``'s page of records on two data sets and two models (two seeds, a flagged baseline)."""
    root = tmp_path_factory.mktemp("html")
    records = []
    for dataset, accuracy in (("digits", 0.9), ("cifar10", 0.7)):
        for model, args in MODELS.items():
            family = "vit" if model == "vit_s" else "cnn"
            for seed in (0, 1):
                for method, weights in (("mwt", 0.4), ("nemo", 0.6), ("standard", 1.0)):
                    acc = accuracy + weights / 10 + seed / 100
                    records.append(make_record(method, seed, model=model, model_args=args, family=family,
                                               dataset=dataset, tasks=[task([0, 1], acc, weights)],
                                               standard_test_acc=0.08 if dataset == "cifar10" and seed else None))
    write_records(root / "runs", records)
    assert run_main(["report", "--runs", root / "runs", "--format", "html", "--out", root / "results.html"]) == 0
    return root / "results.html"


def test_the_page_is_self_contained(page):
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "the page loads something"
    assert "<script src" not in text and 'rel="stylesheet"' not in text
    assert text.count("data:image/png;base64,") >= 2  # size_accuracy and methods plots
    assert text.count('<tbody class="entry"') == 12  # 2 data sets x 2 models x 3 methods
    assert "below method" in text or "chance" in text  # the flagged baseline, in the table and in the details


def test_a_column_the_report_gains_shows_on_the_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.report.display.COLUMNS, "retention_sum", ("units summed", "pct"))
    write_records(tmp_path / "runs", [make_record("mwt"), make_record("standard")])
    result = invoker(capsys, monkeypatch)("report", "--runs", tmp_path / "runs", "--format", "html")
    assert result.code == 0
    assert re.search(r"<th [^>]*>units summed</th>", result.out)


@pytest.fixture(scope="module")
def driver():
    reason = missing()
    if reason:
        if os.environ.get("MODBENCH_REQUIRE_BROWSER"):
            pytest.fail(f"MODBENCH_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    with chromium() as browser:
        yield browser


VISIBLE_ROWS = """return Array.from(document.querySelectorAll("tbody.entry > tr.row"))
    .filter((row) => row.getClientRects().length > 0)
    .map((row) => Array.from(row.cells).map((cell) => cell.innerText.trim()));"""


def _visible_rows(driver) -> list[list[str]]:
    """The cells of the rows the browser lays out (one script call: a call per cell is slow)."""
    return driver.execute_script(VISIBLE_ROWS)


def _column(driver, header: str) -> int:
    from selenium.webdriver.common.by import By

    headers = [th.text.strip() for th in driver.find_elements(By.CSS_SELECTOR, "#comparison > thead th")]
    return headers.index(header)


def _number(text: str) -> float:
    return float(re.match(r"[+-]?\d+(\.\d+)?", text).group())


def test_in_a_browser(driver, page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(page.resolve().as_uri())
    assert driver.title == "modbench results"
    assert console_errors(driver) == []
    assert len(_visible_rows(driver)) == 12

    # sorting by a column reorders the rows: ascending, then descending on a second click
    weights = _column(driver, "weights")
    header = driver.find_elements(By.CSS_SELECTOR, "#comparison > thead th")[weights]
    header.click()
    ascending = [_number(row[weights]) for row in _visible_rows(driver)]
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [_number(row[weights]) for row in _visible_rows(driver)] == sorted(ascending, reverse=True)

    # filtering hides rows: one data set, then one model of it
    Select(driver.find_element(By.CSS_SELECTOR, "select[data-filter=dataset]")).select_by_value("cifar10")
    assert {row[0] for row in _visible_rows(driver)} == {"cifar10"} and len(_visible_rows(driver)) == 6
    model = Select(driver.find_element(By.CSS_SELECTOR, "select[data-filter=model]"))
    model.select_by_value("vit_s:depth=2,width=0.25")
    assert len(_visible_rows(driver)) == 3
    assert driver.find_element(By.ID, "shown-count").text == "3 of 12 rows"

    # a row opens its records: settings, per-task figures, the baseline flag, the preset
    method = _column(driver, "method")
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "tbody.entry > tr.row")
               if r.is_displayed() and r.find_elements(By.TAG_NAME, "td")[method].text == "mwt")
    details = row.find_element(By.XPATH, "following-sibling::tr[1]")
    assert not details.is_displayed()
    row.click()
    assert details.is_displayed() and row.get_attribute("aria-expanded") == "true"
    text = details.text
    for expected in ("seed 0", "seed 1", "preset", "smoke", "baseline", "flag", "recipe", "hyperparameters",
                     "alpha", "module_acc", "weight_retention", "[0, 1]"):
        assert expected in text, expected
    assert "chance" in text  # seed 1's standard model on cifar10 scored 8%
    row.click()
    assert not details.is_displayed()

    row.click()
    shot = tmp_path / "page.png"
    driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert console_errors(driver) == []


def test_the_compare_page_embeds_the_plots_drawn_into_plots(tmp_path, monkeypatch, capsys):
    records = [make_record(method, seed, tasks=[task([0, 1], 0.9 + seed / 100, weights)])
               for seed in (0, 1, 2) for method, weights in (("mwt", 0.4), ("nemo", 0.6), ("standard", 1.0))]
    write_records(tmp_path / "runs", records)
    result = invoker(capsys, monkeypatch)("report", "--runs", tmp_path / "runs", "--format", "html",
                                          "--compare", "mwt,nemo", "--plots", tmp_path / "plots")
    assert result.code == 0
    drawn = sorted((tmp_path / "plots").glob("*.png"))
    assert drawn and result.out.count("data:image/png;base64,") == len(drawn)
    assert "<title>modbench: mwt vs nemo</title>" in result.out and ">mwt − nemo</th>" in result.out
    assert ">95% interval</th>" in result.out and 'class="details"' not in result.out  # no records behind a pair
