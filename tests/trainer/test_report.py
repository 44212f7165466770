"""The comparison report: JSON table, Markdown tables and PNG plots from arms' results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from matplotlib.image import imread
from polya_trainer.artifacts import atomic_write_json
from polya_trainer.cli import main as cli_main
from polya_trainer.report import build_table, load_results, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figures(p1: float, p4: float, greedy: float, n: int = 4) -> dict[str, float]:
    return {"pass@1": p1, "pass@2": (p1 + p4) / 2, "pass@4": p4, "greedy": greedy,
            "n": n, "samples": 4, "mean_tokens": 12.5}


RESULTS = {
    "vanilla": {"base": {"gsm8k": figures(0.10, 0.30, 0.25), "musr_team_allocation":
                         figures(0.40, 0.60, 0.50)},
                "rl": {"gsm8k": figures(0.20, 0.40, 0.25), "musr_team_allocation":
                       figures(0.45, 0.70, 0.50)}},
    "polya": {"base": {"gsm8k": figures(0.10, 0.30, 0.25), "musr_team_allocation":
                       figures(0.40, 0.60, 0.50)},
              "midtrain": {"gsm8k": figures(0.15, 0.50, 0.5), "musr_team_allocation":
                           figures(0.35, 0.65, 0.25)},
              "rl": {"gsm8k": figures(0.25, 0.60, 0.75), "musr_team_allocation":
                     figures(0.50, 0.80, 0.75)}},
}


def write_results(workdir: Path, results: dict) -> None:
    for arm, body in results.items():
        atomic_write_json(workdir / arm / "evaluate" / "results.json", body)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas
    from PIL import Image

    with Image.open(path) as im:
        im.verify()


def md_table(md: str, heading: str) -> dict[str, list[str]]:
    """Rows of the Markdown table under `heading`: first cell -> other cells."""
    after = md.split("\n" + heading + "\n", 1)[1].lstrip("\n")
    table = []
    for line in after.splitlines():
        if not line.startswith("|"):
            break
        table.append(line)
    rows = {}
    for line in table[2:]:  # skip the header and the alignment row
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_report_tables_match_results(tmp_path: Path) -> None:
    write_results(tmp_path, RESULTS)
    md_path = write_report(tmp_path)
    assert md_path == tmp_path / "report" / "report.md"
    data = json.loads((tmp_path / "report" / "report.json").read_text())

    assert data["arms"] == ["vanilla", "polya"]
    assert data["rows"] == ["vanilla/base", "vanilla/rl", "polya/base", "polya/midtrain",
                            "polya/rl"]
    assert data["metrics"] == ["pass@1", "pass@2", "pass@4", "greedy"]
    # benchmark x arm x checkpoint x k equals the inputs.
    for arm, ckpts in RESULTS.items():
        for ckpt, benches in ckpts.items():
            for bench, figs in benches.items():
                for metric in data["metrics"]:
                    assert data["table"][bench][arm][ckpt][metric] == pytest.approx(figs[metric])
    avg = data["average"]["polya"]["rl"]["pass@4"]
    assert avg == pytest.approx((0.60 + 0.80) / 2)
    assert data["reference"] == "vanilla/rl"
    assert data["deltas"]["polya/rl"]["gsm8k"]["pass@4"] == pytest.approx(0.20)
    assert data["deltas"]["polya/rl"]["average"]["pass@1"] == pytest.approx(
        (0.25 + 0.50) / 2 - (0.20 + 0.45) / 2)
    assert "vanilla/rl" not in data["deltas"]
    # Both arms share the base model: its row is shown once.
    assert data["display_rows"] == ["vanilla/base", "vanilla/rl", "polya/midtrain", "polya/rl"]

    md = md_path.read_text()
    benches = data["benchmarks"]
    for metric in data["metrics"]:
        rows = md_table(md, f"## {metric}")
        assert list(rows) == data["display_rows"]
        for row, cells in rows.items():
            arm, ckpt = row.split("/")
            for bench, cell in zip(benches, cells, strict=False):
                assert float(cell) == pytest.approx(
                    100 * data["table"][bench][arm][ckpt][metric], abs=0.006)
            assert float(cells[-1]) == pytest.approx(
                100 * data["average"][arm][ckpt][metric], abs=0.006)
    assert "Not repeated (identical to a base row above, the same model): polya/base." in md
    deltas = md_table(md, "### pass@4")
    assert "polya/base" not in deltas
    assert float(deltas["polya/rl"][0]) == pytest.approx(20.0)
    assert deltas["polya/rl"][0].startswith("+")


def test_report_plots_are_valid_pngs(tmp_path: Path) -> None:
    write_results(tmp_path, RESULTS)
    write_report(tmp_path)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert sorted(data["plots"]) == ["delta_vs_vanilla.png", "passk_gsm8k.png",
                                     "passk_musr_team_allocation.png"]
    md = (tmp_path / "report" / "report.md").read_text()
    for name in data["plots"]:
        assert_png(tmp_path / "report" / name)
        assert f"]({name})" in md
    # Nothing half-written is left behind.
    assert not [p for p in (tmp_path / "report").iterdir() if p.name.startswith(".")]


def test_report_without_vanilla_has_no_deltas(tmp_path: Path) -> None:
    write_results(tmp_path, {"polya": RESULTS["polya"]})
    write_report(tmp_path)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["deltas"] == {} and data["reference"] is None
    assert not (tmp_path / "report" / "delta_vs_vanilla.png").exists()
    assert "no differences versus vanilla RL" in (tmp_path / "report" / "report.md").read_text()


def test_partial_rows_are_marked_and_rebuild_picks_up_new_arms(tmp_path: Path) -> None:
    star = {"base": {"gsm8k": figures(0.1, 0.3, 0.25)}}
    write_results(tmp_path, {"star": star})
    write_report(tmp_path)
    assert load_results(tmp_path).keys() == {"star"}
    write_results(tmp_path, RESULTS)
    write_report(tmp_path)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["arms"] == ["vanilla", "star", "polya"]
    md = (tmp_path / "report" / "report.md").read_text()
    row = md_table(md, "## pass@1")["star/base"]
    assert row[1] == "–" and row[-1].endswith("*")  # no musr result: partial average


def test_cli_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_results(tmp_path, RESULTS)
    assert cli_main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report" / "report.md")
    assert re.search(r"\| polya/rl \| 25\.00 \|", (tmp_path / "report" / "report.md").read_text())


def test_build_table_empty() -> None:
    data = build_table({})
    assert data["rows"] == [] and data["benchmarks"] == [] and data["deltas"] == {}
