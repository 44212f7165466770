"""The comparison report: JSON table, Markdown tables and PNG plots from arms' results."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread
from polya_trainer.cli import main as cli_main
from polya_trainer.report import build_table, load_questions, load_results, write_report
from polya_trainer.runtime.artifacts import atomic_write_json

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
                assert data["questions"][bench][arm][ckpt] == figs["n"]
    avg = data["average"]["polya"]["rl"]["pass@4"]
    assert avg == pytest.approx((0.60 + 0.80) / 2)
    assert data["reference"] == "vanilla/rl"
    assert data["deltas"]["polya/rl"]["gsm8k"]["pass@4"] == pytest.approx(0.20)
    assert "vanilla/rl" not in data["deltas"]
    # Both arms share the base model: its row is shown once.
    assert data["display_rows"] == ["vanilla/base", "vanilla/rl", "polya/midtrain", "polya/rl"]
    # The headline is the math-only average at the largest k (no k=64 here): MuSR is apart.
    assert data["math_benchmarks"] == ["gsm8k"]
    assert data["apart_benchmarks"] == ["musr_team_allocation"]
    head = data["headline"]
    assert head["metric"] == "pass@4" and head["benchmarks"] == ["gsm8k"]
    assert head["rows"]["polya/rl"]["pass@4"]["value"] == pytest.approx(0.60)
    assert head["rows"]["polya/rl"]["questions"] == 4

    md = md_path.read_text()
    benches = data["math_benchmarks"]
    for metric in data["metrics"]:
        rows = md_table(md, f"## Math benchmarks: {metric}")
        assert list(rows) == data["display_rows"]
        for row, cells in rows.items():
            arm, ckpt = row.split("/")
            for bench, cell in zip(benches, cells, strict=False):
                assert float(cell.split()[0]) == pytest.approx(
                    100 * data["table"][bench][arm][ckpt][metric], abs=0.006)
    headline = md_table(md, "## Headline: pass@4 averaged over the math benchmarks (gsm8k)")
    assert float(headline["polya/rl"][2]) == pytest.approx(60.0)
    assert headline["polya/rl"][-1] == "4"  # questions behind the figure
    apart = md_table(md, "## Reported apart (code and multiple choice): pass@1")
    assert float(apart["polya/rl"][0]) == pytest.approx(50.0)
    assert "gsm8k (n=4)" in md
    assert "Not repeated (identical to a base row above, the same model): polya/base." in md
    deltas = md_table(md, "### pass@4")
    assert "polya/base" not in deltas
    assert float(deltas["polya/rl"][0]) == pytest.approx(20.0)
    assert deltas["polya/rl"][0].startswith("+")


def question_rows(workdir: Path, arm: str, ckpt: str, bench: str, correct: list[int],
                  n: int = 4) -> None:
    """Per-question rows as evaluate writes them (c of n correct; greedy = c > n/2)."""
    from polya_trainer.verify.passk import pass_at_k

    rows = [{"id": f"q{i}", "n": n, "c": c, "greedy_correct": c > n // 2,
             **{f"pass@{k}": pass_at_k(n, c, k) for k in (1, 2, 4)}}
            for i, c in enumerate(correct)]
    path = workdir / arm / "evaluate" / "questions" / ckpt / f"{bench}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def summary_of(correct: list[int], n: int = 4) -> dict[str, float]:
    from polya_trainer.verify.passk import mean_pass_at_k

    counts = [(n, c) for c in correct]
    return {"pass@1": mean_pass_at_k(counts, 1), "pass@2": mean_pass_at_k(counts, 2),
            "pass@4": mean_pass_at_k(counts, 4),
            "greedy": sum(c > n // 2 for c in correct) / len(correct), "n": len(correct),
            "samples": n, "kind": "math",
            "settings": {"temperature": 0.6, "top_p": 0.95, "estimator": "unbiased"}}


def paired_workdir(tmp_path: Path, q: int = 60) -> dict[str, list[int]]:
    """vanilla base/rl and polya rl on one math benchmark of q questions: vanilla/rl gains
    one correct sample on every question; polya/rl equals vanilla/rl."""
    import random

    rng = random.Random(0)
    base = [rng.randint(0, 3) for _ in range(q)]
    rl = [c + 1 for c in base]
    arms = {("vanilla", "base"): base, ("vanilla", "rl"): rl, ("polya", "rl"): list(rl)}
    results: dict = {}
    for (arm, ckpt), correct in arms.items():
        question_rows(tmp_path, arm, ckpt, "toymath", correct)
        results.setdefault(arm, {})[ckpt] = {"toymath": summary_of(correct)}
    write_results(tmp_path, results)
    return {f"{a}/{c}": v for (a, c), v in arms.items()}


def test_intervals_contain_the_value_and_shrink_with_questions(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    paired_workdir(small, q=20)
    paired_workdir(large, q=400)
    widths = []
    for wd in (small, large):
        data = build_table(*(lambda r: (r, load_questions(wd, r)))(load_results(wd)))
        for metric in ("pass@1", "pass@4", "greedy"):
            lo, hi = data["ci"]["toymath"]["vanilla"]["rl"][metric]
            assert lo <= data["table"]["toymath"]["vanilla"]["rl"][metric] <= hi
        lo, hi = data["ci"]["toymath"]["vanilla"]["base"]["pass@1"]
        widths.append(hi - lo)
        h = data["headline"]["rows"]["vanilla/base"]["pass@4"]
        assert h["ci"][0] <= h["value"] <= h["ci"][1]
    assert widths[0] > 2 * widths[1] > 0  # ~ 1/sqrt(n): 20 vs 400 questions


def test_paired_comparison_detects_a_real_gain_and_not_a_tie(tmp_path: Path) -> None:
    paired_workdir(tmp_path)
    results = load_results(tmp_path)
    data = build_table(results, load_questions(tmp_path, results))
    by = {(e["row"], e["versus"]): e for e in data["paired"]}
    gain = by[("vanilla/rl", "vanilla/base")]["benchmarks"]["toymath"]["pass@1"]
    assert gain["difference"] == pytest.approx(0.25)  # one more of 4 samples everywhere
    assert gain["p_value"] < 0.01 and gain["ci"][0] > 0 and gain["questions"] == 60
    tie = by[("polya/rl", "vanilla/rl")]
    assert tie["headline"]["difference"] == 0.0 and tie["headline"]["p_value"] == 1.0
    # The base model's curve is in the headline next to the trained rows.
    assert {"vanilla/base", "vanilla/rl", "polya/rl"} <= set(data["headline"]["rows"])


def test_paired_p_value_matches_a_permutation_free_reference() -> None:
    """A noisy difference around zero is not significant; its interval covers zero."""
    import numpy as np
    from polya_trainer.report.stats import paired

    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, 200)
    out = paired([noise - noise.mean()])
    assert out["p_value"] > 0.5 and out["ci"][0] < 0 < out["ci"][1]
    shifted = paired([noise - noise.mean() + 0.5])
    assert shifted["p_value"] < 0.001


def test_report_plots_are_valid_pngs(tmp_path: Path) -> None:
    write_results(tmp_path, RESULTS)
    write_report(tmp_path)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    # Without per-question rows there are no paired differences to plot.
    assert sorted(data["plots"]) == ["passk_gsm8k.png", "passk_headline.png",
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
    row = md_table(md, "## Reported apart (code and multiple choice): pass@1")["star/base"]
    assert row == ["–"]  # no musr result for star
    assert md_table(md, "## Math benchmarks: pass@1")["star/base"][0] == "10.00"


def test_cli_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_results(tmp_path, RESULTS)
    assert cli_main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report" / "report.md")
    assert re.search(r"\| polya/rl \| 25\.00 \|", (tmp_path / "report" / "report.md").read_text())


def test_build_table_empty() -> None:
    data = build_table({})
    assert data["rows"] == [] and data["benchmarks"] == [] and data["deltas"] == {}


def _cdp_pipe(url: str, expression: str, timeout: float = 60.0, width: int | None = None
              ) -> Any:
    """Evaluate `expression` in headless Chromium once `url` has loaded.

    Speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (fd 3: commands in,
    fd 4: replies out, each JSON message ended by a NUL byte), as documented for
    ``Target.createTarget``, ``Target.attachToTarget`` (flatten), ``Page.navigate``,
    ``Runtime.evaluate`` and ``Emulation.setDeviceMetricsOverride`` (a `width` px wide
    window) at chromedevtools.github.io/devtools-protocol. No websocket client needed.
    """
    import os
    import select
    import shutil as sh
    import subprocess
    import tempfile
    import time

    exe = sh.which("chromium") or sh.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is absent: run scripts/setup-tools.sh")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="chromium-")

    def child() -> None:  # fds 3 and 4 as Chromium expects them
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         f"--user-data-dir={profile}", "--allow-file-access-from-files", "about:blank"],
        preexec_fn=child, pass_fds=(3, 4, to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    buf = b""
    ids = iter(range(1, 10_000))
    deadline = time.monotonic() + timeout

    def call(method: str, params: dict, session: str | None = None) -> dict:
        nonlocal buf
        mid = next(ids)
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == mid:
                    assert "error" not in reply, reply
                    return reply["result"]
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to {method}"
            ready, _, _ = select.select([from_chrome_r], [], [], left)
            if ready:
                chunk = os.read(from_chrome_r, 1 << 16)
                assert chunk, "chromium closed the pipe"
                buf += chunk

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        if width is not None:
            call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        call("Page.navigate", {"url": url}, session)
        while True:  # wait for the load (images decoded) to finish
            state = call("Runtime.evaluate", {
                "expression": "[document.readyState, location.href]", "returnByValue": True},
                session)
            if state["result"].get("value") == ["complete", url]:
                break
            assert time.monotonic() < deadline, "page never finished loading"
            time.sleep(0.2)
        out = call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                   session)
        return out["result"]["value"]
    finally:
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        proc.kill()
        proc.wait()
        sh.rmtree(profile, ignore_errors=True)


CHECK_PAGE = """(() => {
  const imgs = Array.from(document.images);
  const head = document.getElementById('headline');
  return {images: imgs.length,
          loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          external: imgs.filter(i => !i.src.startsWith('data:image/png;base64,')).length,
          headline_rows: head ? head.tBodies[0].rows.length : -1,
          headline_header: head ? Array.from(head.tHead.rows[0].cells).map(c => c.textContent)
                                : [],
          tables: Array.from(document.querySelectorAll('table')).map(t => t.id)};
})()"""


def _card(workdir: Path) -> None:
    atomic_write_json(workdir / "polya" / "generate" / "card.json", {
        "counts": {"pairs": 10, "accepted": 7}, "acceptance_rate": 0.7,
        "acceptance_rate_per_heuristic": {
            "working_backwards": {"pairs": 5, "accepted": 4, "rate": 0.8},
            "analogy": {"pairs": 5, "accepted": 3, "rate": 0.6}}})


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    paired_workdir(tmp_path)
    _card(tmp_path)
    write_report(tmp_path)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<table id=\"headline\">" in page and "<table id=\"paired\">" in page
    assert "<table id=\"data-polya\">" in page and "working_backwards" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert page.count("data:image/png;base64,") == len(
        json.loads((tmp_path / "report" / "report.json").read_text())["plots"]) >= 3
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Training data of arm polya (generate stage)" in md


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    paired_workdir(tmp_path)
    _card(tmp_path)
    write_report(tmp_path)
    page = tmp_path / "report" / "report.html"
    got = _cdp_pipe(page.as_uri(), CHECK_PAGE)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert got["images"] == len(data["plots"]) >= 3
    assert got["loaded"] == got["images"] and got["external"] == 0
    assert got["headline_rows"] == 3  # vanilla/base, vanilla/rl, polya/rl
    assert got["headline_header"][0] == "arm/checkpoint"
    assert {"headline", "paired", "data-polya", "settings"} <= set(got["tables"])
    # A broken image is caught by the same check (the test can fail).
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("data:image/png;base64,",
                                               "data:image/png;base64,AAAA", 1))
    assert _cdp_pipe(broken.as_uri(), CHECK_PAGE)["loaded"] == got["images"] - 1


# --------------------------------------------------------------------------- Holm, sentences

# Raw p-values and the Holm column of R multtest's mt.rawp2adjp, as statsmodels' own tests
# hold them (statsmodels/stats/tests/test_multi.py: res_multtest1, and res_multtest3, where
# the step-down's running maximum binds).
RAW_1 = [5.23656777208e-05, 0.00028140506198, 0.0149877310796, 0.0202732688798,
         0.177096952723, 0.642193923795, 0.680845947633, 0.71626938238, 0.838541367553,
         0.967833824309]
HOLM_1 = [5.23656777208e-04, 2.53264555782e-03, 1.199018486368e-01, 1.419128821586e-01,
          1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
RAW_3 = [0.001, 0.002, 0.003, 0.004, 0.005, 0.05, 0.06, 0.07, 0.08, 0.09]
HOLM_3 = [0.01, 0.018, 0.024, 0.028, 0.03, 0.25, 0.25, 0.25, 0.25, 0.25]


@pytest.mark.parametrize(("raw", "adjusted"), [(RAW_1, HOLM_1), (RAW_3, HOLM_3)])
def test_holm_matches_r_multtest(raw: list[float], adjusted: list[float]) -> None:
    import random

    from polya_trainer.report.stats import holm

    assert holm(raw) == pytest.approx(adjusted, rel=1e-9)
    order = random.Random(0).sample(range(len(raw)), len(raw))  # given in any order
    assert holm([raw[i] for i in order]) == pytest.approx([adjusted[i] for i in order],
                                                          rel=1e-9)
    assert holm([]) == []


def holm_workdir(tmp_path: Path) -> None:
    """paired_workdir plus polya/midtrain, a comparison not pre-registered whose per-question
    differences to vanilla/rl are noisy (-1, 0 or +1 sample of 4)."""
    import random

    rl = paired_workdir(tmp_path)["vanilla/rl"]
    rng = random.Random(5)
    mid = [max(0, min(4, c + rng.choice((-1, 0, 1)))) for c in rl]
    question_rows(tmp_path, "polya", "midtrain", "toymath", mid)
    polya = load_results(tmp_path)["polya"]
    write_results(tmp_path, {"polya": {**polya, "midtrain": {"toymath": summary_of(mid)}}})


def test_every_paired_test_is_holm_corrected(tmp_path: Path) -> None:
    holm_workdir(tmp_path)
    results = load_results(tmp_path)
    data = build_table(results, load_questions(tmp_path, results))
    marked = {(e["row"], e["versus"]): e["preregistered"] for e in data["paired"]}
    assert marked == {("vanilla/rl", "vanilla/base"): True, ("polya/midtrain", "vanilla/rl"):
                      False, ("polya/rl", "vanilla/rl"): True}
    found = sorted((r for e in data["paired"]
                    for r in [e["headline"], *(h for per in e["benchmarks"].values()
                                               for h in per.values())] if r),
                   key=lambda r: r["p_value"])
    m = data["multiple_comparisons"]["tests"]
    assert m == len(found) == 3 * 4  # 3 pairs x (math average + pass@1, pass@4, greedy)
    assert data["multiple_comparisons"]["method"] == "holm"
    assert found[0]["p_holm"] == min(1.0, m * found[0]["p_value"])  # Holm's first step
    assert all(r["p_value"] <= r["p_holm"] <= 1 for r in found)
    adjusted = [r["p_holm"] for r in found]
    assert adjusted == sorted(adjusted)  # the step-down keeps the order of the p-values
    between = [r for r in found if 0 < r["p_value"] < 1]
    assert between and all(r["p_holm"] > r["p_value"] for r in between)


def test_findings_state_each_preregistered_comparison(tmp_path: Path) -> None:
    from polya_trainer.report.text import findings

    holm_workdir(tmp_path)
    results = load_results(tmp_path)
    data = build_table(results, load_questions(tmp_path, results))
    gain, tie = findings(data)  # polya/midtrain vs vanilla/rl is not pre-registered
    m = data["multiple_comparisons"]["tests"]
    assert gain.startswith("vanilla/rl versus vanilla/base: pass@4 on the math average")
    assert "+25.00 points" in gain and f"p < 0.001 over {m} tests" in gain
    assert gain.endswith("a detectable difference at the 5% level.")
    assert tie.startswith("polya/rl versus vanilla/rl:") and "= 1.000" in tie
    assert "not detectable" in tie
    # Without per-question rows, or without the rows at all, the sentences say so.
    assert all("no paired comparison" in s for s in findings(build_table(RESULTS)))
    assert findings(build_table({}))[0].startswith("No pre-registered comparison")


def test_report_opens_with_the_findings_and_folds_the_paired_table(tmp_path: Path) -> None:
    from polya_trainer.report.text import findings

    holm_workdir(tmp_path)
    write_report(tmp_path)
    results = load_results(tmp_path)
    sentences = findings(build_table(results, load_questions(tmp_path, results)))
    md = (tmp_path / "report" / "report.md").read_text().splitlines()
    assert md[2:2 + len(sentences)] == [f"- {s}" for s in sentences]
    assert "Holm-Bonferroni" in "\n".join(md)
    assert len(md_table("\n".join(md), "## Paired per-question comparisons (percentage "
                        "points)")["vanilla/rl †"]) == 7
    page = (tmp_path / "report" / "report.html").read_text()
    order = [page.index(s) for s in ("<ul id=\"findings\">", "<figure><img alt=\"passk_headline"
                                     ".png\"", "<table id=\"headline\">")]
    assert order == sorted(order)
    assert all(f"<li>{html.escape(s)}</li>" in page for s in sentences)
    folded = page.split("<details>", 1)[1].split("</details>", 1)[0]
    assert "<table id=\"paired\">" in folded and "Holm-Bonferroni" in folded


def test_page_shortens_content_hashes_into_tooltips() -> None:
    from polya_trainer.report.page import render_html

    digest = hashlib.sha256(b"model files").hexdigest()
    figs = {**summary_of([1, 2]), "settings": {"model": f"sha256:{digest}", "seed": 1}}
    page = render_html(build_table({"vanilla": {"base": {"toymath": figs}}}), {})
    assert f"<td title=\"sha256:{digest}\">sha256:{digest[:12]}…</td>" in page
    assert page.count(digest) == 1  # only in the tooltip


def test_plots_on_their_own(tmp_path: Path) -> None:
    from polya_trainer.report.plots import delta_plot, headline_plot, passk_plot

    assert delta_plot(build_table(RESULTS)) is None  # no per-question rows: no differences
    assert headline_plot(build_table({})) is None
    paired_workdir(tmp_path)
    results = load_results(tmp_path)
    data = build_table(results, load_questions(tmp_path, results))
    for name, png in [("delta", delta_plot(data)), ("head", headline_plot(data)),
                      ("toymath", passk_plot(data, "toymath"))]:
        assert png is not None
        (tmp_path / f"{name}.png").write_bytes(png)
        assert_png(tmp_path / f"{name}.png")


def wide_workdir(path: Path, benches: int = 14, q: int = 10) -> None:
    """Long arm names and many benchmarks, named without a space or hyphen to break at, each
    with its settings' model hash: as plain tables these are far wider than 1280 px."""
    import random

    rng = random.Random(2)
    long_arm = "polya_with_a_deliberately_long_arm_name_for_the_width_check"
    results: dict = {}
    for arm, ckpt in [("vanilla", "base"), ("vanilla", "rl"), ("polya", "rl"),
                      (long_arm, "midtrain"), (long_arm, "rl")]:
        digest = hashlib.sha256(f"{arm}/{ckpt}".encode()).hexdigest()
        for b in range(benches):
            bench = f"word_problems_benchmark_number_{b:02d}"
            correct = [rng.randint(0, 4) for _ in range(q)]
            question_rows(path, arm, ckpt, bench, correct)
            figs = summary_of(correct)
            figs["settings"] = {**figs["settings"], "model": f"sha256:{digest}"}
            results.setdefault(arm, {}).setdefault(ckpt, {})[bench] = figs
    write_results(path, results)


CHECK_WIDTH = """(() => {
  const fits = () => [document.documentElement.scrollWidth, window.innerWidth];
  const folded = fits();
  const details = document.querySelector('details');
  const closed = !details.open;
  details.open = true;
  return {folded: folded, unfolded: fits(), closed: closed,
          opening: Array.from(document.body.children).slice(0, 4).map(e => e.tagName)};
})()"""


@pytest.mark.slow
def test_html_report_fits_a_1280px_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from polya_trainer.report import page

    wide_workdir(tmp_path)
    write_report(tmp_path)
    html_path = tmp_path / "report" / "report.html"
    got = _cdp_pipe(html_path.as_uri(), CHECK_WIDTH, width=1280)
    assert got["folded"][1] == 1280
    assert got["folded"][0] <= got["folded"][1] and got["unfolded"][0] <= got["unfolded"][1]
    assert got["closed"] and got["opening"] == ["H1", "UL", "FIGURE", "P"]
    # The same page with its wide tables not turned scrolls sideways: the check can fail.
    monkeypatch.setattr(page, "WIDE", 1000)
    plain = tmp_path / "plain.html"
    plain.write_text(page.render_html(json.loads(html_path.with_suffix(".json").read_text()),
                                      {}))
    got = _cdp_pipe(plain.as_uri(), CHECK_WIDTH, width=1280)
    assert got["folded"][0] > got["folded"][1] == 1280
