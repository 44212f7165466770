"""Answer extraction and verification (polya_trainer.verify.answers), with real math-verify."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from fractions import Fraction

import pytest
from polya_trainer.verify import answers as A
from polya_trainer.verify.answers import (
    Extracted,
    Verdict,
    check,
    check_many,
    check_many_verdicts,
    extract_answer,
    extraction_counts,
    has_boxed,
    is_correct,
    parse_gold,
    to_number,
)

B = "\\boxed"

# (prediction, gold, expected)
CASES: list[tuple[str, str, bool]] = [
    # integers
    (f"So the total is {B}{{72}}.", "72", True),
    (f"{B}{{72}}", "73", False),
    (f"{B}{{0}}", "0", True),
    (f"{B}{{007}}", "7", True),
    (f"{B}{{+5}}", "5", True),
    # decimals and trailing zeros
    (f"{B}{{3.50}}", "3.5", True),
    (f"{B}{{8.25}}", "8.25", True),
    (f"{B}{{18.00}}", "18", True),
    (f"{B}{{.5}}", "0.5", True),
    (f"{B}{{0.5}}", "0.05", False),
    (f"{B}{{72.}}", "72", True),
    # commas
    (f"{B}{{1,000}}", "1000", True),
    (f"{B}{{1{{,}}000}}", "1000", True),
    (f"{B}{{12,345.50}}", "12345.5", True),
    (f"{B}{{1,000}}", "100", False),
    # currency and units
    (f"{B}{{\\$1,000.00}}", "1000", True),
    (f"{B}{{$18}}", "18", True),
    (f"{B}{{-\\$5}}", "-5", True),
    (f"{B}{{72 \\text{{ dollars}}}}", "72", True),
    (f"{B}{{72 dollars}}", "72", True),
    (f"{B}{{\\text{{72 apples}}}}", "72", True),
    (f"{B}{{15 \\mbox{{ minutes}}}}", "15", True),
    (f"{B}{{12^\\circ}}", "12", True),
    (f"{B}{{5\\text{{ cm}}}}", "6", False),
    (f"{B}{{3 km per hour}}", "3", True),
    # percent (rule: p% equals x when x == p or x == p/100)
    (f"{B}{{50\\%}}", "50", True),
    (f"{B}{{50\\%}}", "0.5", True),
    (f"{B}{{50}}", "50\\%", True),
    (f"{B}{{0.5}}", "50%", True),
    (f"{B}{{40\\%}}", "50", False),
    (f"{B}{{25\\%}}", "25%", True),
    # fractions
    (f"{B}{{\\frac{{1}}{{2}}}}", "0.5", True),
    (f"{B}{{\\dfrac{{3}}{{4}}}}", "0.75", True),
    (f"{B}{{\\tfrac{{3}}{{4}}}}", "3/4", True),
    (f"{B}{{\\frac12}}", "1/2", True),
    (f"{B}{{6/8}}", "\\frac{3}{4}", True),
    (f"{B}{{-\\frac{{3}}{{4}}}}", "-0.75", True),
    (f"{B}{{\\frac{{-3}}{{4}}}}", "-3/4", True),
    (f"{B}{{\\frac{{2}}{{3}}}}", "\\frac{3}{2}", False),
    (f"{B}{{0.333333}}", "1/3", True),   # math-verify's 6-digit rounding decides
    (f"{B}{{0.33}}", "1/3", False),
    # negative numbers
    (f"{B}{{-7}}", "-7", True),
    (f"{B}{{-7}}", "7", False),
    (f"{B}{{\u22127}}", "-7", True),
    # scientific notation
    (f"{B}{{1e3}}", "1000", True),
    (f"{B}{{2.5E-2}}", "0.025", True),
    (f"{B}{{1.5\\times 10^{{3}}}}", "1500", True),
    (f"{B}{{1.5 \\cdot 10^3}}", "1500", True),
    (f"{B}{{1.5\\times 10^{{3}}}}", "150", False),
    # LaTeX through math-verify
    (f"{B}{{\\sqrt{{2}}}}", "\\sqrt 2", True),
    (f"{B}{{2^{{1/2}}}}", "\\sqrt{2}", True),
    (f"{B}{{\\sqrt{{4}}}}", "2", True),
    (f"{B}{{\\sqrt{{3}}}}", "\\sqrt{2}", False),
    (f"{B}{{\\frac{{\\pi}}{{2}}}}", "\\dfrac{\\pi}{2}", True),
    (f"{B}{{2\\pi}}", "\\pi", False),
    (f"{B}{{1+2x}}", "2x+1", True),
    (f"{B}{{2x+2}}", "2x+1", False),
    (f"{B}{{(x-1)(x+1)}}", "x^2-1", True),
    (f"{B}{{x = 5}}", "5", True),
    (f"{B}{{3, 5}}", "3", False),
    (f"{B}{{3 and 5}}", "3", False),
    # GSM8K golds and predictions
    ("She sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "Natalia ... \n#### 72", True),
    ("Total: 5 + 5 = 10\n#### 10", "Work: <<5+5=10>>10\n#### 10", True),
    ("#### 1,250", "#### 1250", True),
    ("#### 9", "#### 10", False),
    (f"{B}{{18}}", "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18", True),
    # nested braces, \fbox, multiple boxed (last wins)
    (f"{B}{{\\frac{{\\sqrt{{16}}}}{{2}}}}", "2", True),
    (f"{B}{{{{12}}}}", "12", True),
    ("\\fbox{42}", "42", True),
    # two boxes close together are one answer, a set, as math-verify reads them
    (f"First {B}{{3}}, corrected: {B}{{5}}", "5", False),
    (f"First {B}{{5}}, corrected: {B}{{3}}", "5", False),
    (f"First {B}{{3}}; {'much later reasoning, ' * 4}so {B}{{5}}", "5", True),  # far apart
    (f"{B}{{1}}{B}{{2}}", "1, 2", True),
    (f"{B} 7", "7", True),
    # answer statements (the formats common prompts ask for)
    ("The answer is 42.", "42", True),
    ("Answer: 42", "42", True),
    ("Answer: 24", "42", False),
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "0.5", True),
    ("so the final answer is 3.5", "3.5", True),
    # no explicit final answer: nothing is credited by default (the fallback is opt-in)
    ("To check whether the answer is 42 we substitute x = 42 into", "42", False),
    ("I get 42 in the end.", "42", False),
    ("I think 3, then 7 apples", "7", False),
    ("I think 7, then 3 apples", "7", False),
    ("No idea.", "5", False),
    ("", "5", False),
    (f"{B}{{}}", "5", False),
    (f"{B}{{5", "5", False),  # the box is cut off: no answer
    (f"{B}{{3}} so far, then {B}{{5", "3", False),  # a cut-off last box is not the earlier one
    # gold with a \boxed solution (MATH style)
    (f"{B}{{\\frac{{1}}{{4}}}}", f"so the probability is {B}{{\\frac14}}.", True),
    # pathological input refused, not hung on
    (f"{B}{{9^{{9^{{9^{{9}}}}}}}}", "1", False),
    (f"{B}{{{'1+' * 400}1}}", "401", False),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), CASES)
def test_is_correct(pred: str, gold: str, expected: bool) -> None:
    assert is_correct(pred, gold) is expected


def test_case_count() -> None:
    assert len(CASES) >= 60
    assert sum(not e for _, _, e in CASES) >= 15


@pytest.mark.parametrize(("text", "expected"), [
    (f"a {B}{{1}} which we check again {B}{{\\frac12}}", Extracted("\\frac12", "boxed")),
    (f"a {B}{{1}} b {B}{{\\frac{{1}}{{2}}}}", Extracted("1,\\frac{1}{2}", "boxed")),
    (f"{B}{{ 12 }}", Extracted("12", "boxed")),
    ("\\fbox{x+1}", Extracted("x+1", "boxed")),
    ("work\n#### 1,234\n", Extracted("1,234", "gsm8k")),
    ("#### 5\nmore #### 6", Extracted("6", "gsm8k")),
    (f"{B}{{1}} and {B}{{2}}", Extracted("1,2", "boxed")),
    (f"{B}{{2}}{B}{{2}}", Extracted("2", "boxed")),  # repeats in a row count once
    ("Answer: 314", Extracted("314", "answer_line")),
    ("**Answer:** $\\frac{1}{2}$", Extracted("\\frac{1}{2}", "answer_line")),
    ("Answer:\n\n-3\n", Extracted("-3", "answer_line")),
    ("Final Answer: The final answer is $96$. I hope it is correct.",
     Extracted("96", "answer_is")),
    ("The answer is 1,250.", Extracted("1,250", "answer_is")),
    ("9 * 7 = 63, so the final answer is 63", Extracted("63", "answer_is")),
    ("Therefore, the final answer is: $\\boxed{204}$. I hope it is correct",
     Extracted("204", "boxed")),
    # the explicit answer that comes last counts
    (f"{B}{{3}}\n\nAnswer: 5", Extracted("5", "answer_line")),
    (f"Answer: 5\n\nSo {B}{{3}}", Extracted("3", "boxed")),
    ("#### 7\nThe answer is 8.", Extracted("8", "answer_is")),
    (f"{B}{{3\n\nAnswer: 5", Extracted("5", "answer_line")),  # malformed box, then a line
    # not answer statements
    ("The answer is the number of apples left.", None),  # prose, not a value
    ("Put the answer on its own line after Answer: $Answer", None),  # the instruction echoed
    ("The answer is", None),  # cut off
    (f"Answer: 5\n{B}{{3", None),  # a cut-off box after the statement
    ("nothing here", None),
    (f"{B}{{}}", None),
    (f"{B}{{3}} then {B}{{4", None),
    ("", None),
])
def test_extract_answer(text: str, expected: Extracted | None) -> None:
    assert extract_answer(text) == expected
    assert extract_answer(text, allow_fallback=True) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("so -3.5 is it", Extracted("-3.5", "last_number", fallback=True)),
    ("ratio 3/4", Extracted("3/4", "last_number", fallback=True)),
    ("gives \\frac{5}{6}", Extracted("\\frac{5}{6}", "last_number", fallback=True)),
    ("total 1,000 items", Extracted("1,000", "last_number", fallback=True)),
])
def test_extract_answer_fallback_is_opt_in(text: str, expected: Extracted) -> None:
    assert extract_answer(text) is None
    assert extract_answer(text, allow_fallback=True) == expected


def test_fallback_is_opt_in() -> None:
    assert not is_correct("I get 42 in the end.", "42")
    assert is_correct("I get 42 in the end.", "42", allow_fallback=True)
    assert is_correct(f"{B}{{42}}", "42")
    truncated = "First 10 - 4 = 6, then we subtract 3 from"
    assert not is_correct(truncated, "3")
    assert is_correct(truncated, "3", allow_fallback=True)  # why the fallback is off by default
    assert check_many([truncated, "#### 3"], ["3", "3"]) == [False, True]
    assert check_many([truncated], ["3"], allow_fallback=True) == [True]


def test_verdicts_record_extraction() -> None:
    preds = [f"{B}{{7}}", "#### 7", "it is 7", f"{B}{{\\sqrt{{49}}}}", "nothing", "Answer: 7",
             "The answer is 8."]
    got = check_many_verdicts(preds, ["7"] * 7)
    assert [(v.correct, v.method, v.decided_by) for v in got] == [
        (True, "boxed", "exact"), (True, "gsm8k", "exact"), (False, "none", "none"),
        (True, "boxed", "math_verify"), (False, "none", "none"),
        (True, "answer_line", "exact"), (False, "answer_is", "exact")]
    assert extraction_counts(got) == {"boxed": 2, "gsm8k": 1, "answer_line": 1, "answer_is": 1,
                                      "last_number": 0, "none": 2}
    fb = check_many_verdicts(preds, ["7"] * 7, allow_fallback=True)
    assert [v.method for v in fb] == ["boxed", "gsm8k", "last_number", "boxed", "none",
                                      "answer_line", "answer_is"]
    assert check(preds[2], "7", allow_fallback=True) == Verdict(True, "last_number", "exact")


def test_has_boxed() -> None:
    assert has_boxed(f"so {B}{{3}}")
    assert has_boxed("\\fbox{x}")
    assert not has_boxed(f"{B}{{}}")
    assert not has_boxed(f"{B}{{3")
    assert not has_boxed("#### 3")


@pytest.mark.parametrize(("text", "value", "pct"), [
    ("1,000", Fraction(1000), False),
    ("\\$3.50", Fraction(7, 2), False),
    ("-\\frac{1}{4}", Fraction(-1, 4), False),
    ("12.5\\%", Fraction(25, 2), True),
    ("2.5e2", Fraction(250), False),
    ("7 \\text{ apples}", Fraction(7), False),
])
def test_to_number(text: str, value: Fraction, pct: bool) -> None:
    assert to_number(text) == (value, pct)


@pytest.mark.parametrize("text", ["2x", "2 x", "5 pi", "3, 5", "1,2", "\\sqrt{2}", "1/0", "abc"])
def test_to_number_rejects(text: str) -> None:
    assert to_number(text) is None


def test_gold_parsed_once_and_cached() -> None:
    parse_gold.cache_clear()
    g1 = parse_gold("Work: <<2*3=6>>6\n#### 6")
    g2 = parse_gold("Work: <<2*3=6>>6\n#### 6")
    assert g1 is g2 and g1.text == "6" and g1.number == (Fraction(6), False)
    assert parse_gold.cache_info().hits == 1
    g = parse_gold("\\sqrt{2}")
    assert g.number is None
    first = g.parsed()
    assert first and g.parsed() is first  # math-verify parse kept on the object
    assert is_correct(f"{B}{{\\sqrt 2}}", g)
    assert not is_correct(f"{B}{{72}}", parse_gold(""))


def test_exact_path_skips_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain numbers never reach math-verify: its entry points are replaced by failures."""
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("math-verify was called")

    monkeypatch.setattr(A, "_mv_parse", boom)
    monkeypatch.setattr(A, "_mv_verify", boom)
    assert is_correct(f"{B}{{\\$1,000}}", "#### 1000")
    assert not is_correct(f"{B}{{\\frac{{1}}{{2}}}}", "0.25")
    assert is_correct("#### 50", "50\\%")


def test_math_verify_main_thread_uses_alarm_only_when_free() -> None:
    # pytest-timeout may hold an alarm; either way the call answers correctly.
    assert is_correct(f"{B}{{\\sqrt{{8}}}}", "2\\sqrt{2}")
    assert threading.current_thread() is threading.main_thread()


def test_check_many_matches_serial_in_threads_and_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    preds = [p for p, _, _ in CASES]
    golds = [g for _, g, _ in CASES]
    expected = [e for _, _, e in CASES]
    serial = check_many(preds, golds)
    assert serial == expected

    parse_gold.cache_clear()
    with ThreadPoolExecutor(4) as pool:  # off the main thread: no signal.alarm
        threaded = [
            ok for part in pool.map(check_many, [preds[i::4] for i in range(4)],
                                    [golds[i::4] for i in range(4)])
            for ok in part
        ]
    reorder = [x for i in range(4) for x in expected[i::4]]
    assert threaded == reorder

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        (procs,) = pool.map(check_many, [preds], [golds])
    assert procs == expected

    monkeypatch.setattr(A, "PROCESS_MIN_BATCH", 1)
    assert check_many(preds, golds, processes=2, chunk_size=16) == expected
    assert check_many(preds, [parse_gold(g) for g in golds], processes=2) == expected


def test_check_many_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 golds"):
        check_many(["1", "2"], ["1"])


@pytest.mark.parametrize(("text", "boxes"), [
    (f"{B}{{1}}{B}{{2}}", ["1", "2"]),
    (f"{B}{{1}} then {B}{{2}}", ["1", "2"]),  # under 10 characters apart
    (f"{B}{{1}} which we double-check {B}{{2}}", ["2"]),  # no separator between
    (f"{B}{{1}} and, after checking it twice, {B}{{2}}", ["1", "2"]),  # a separator, < 70
    (f"{B}{{1}}, {'x' * 70} {B}{{2}}", ["2"]),  # 70 or more characters apart
    (f"{B}{{2}}, which is what we wrote first: {B}{{2}}", ["2"]),  # the same answer again
    (f"{B}{{1}}, {B}{{2}} and {B}{{3}}", ["1", "2", "3"]),
    (f"{B}{{a{{b}}c}} and {B}{{d}}", ["a{b}c", "d"]),
    (f"{B} 7", ["7"]),
    ("no box", []),
    (f"{B}{{1}} and {B}{{2", None),  # the last box is cut off
])
def test_final_boxes(text: str, boxes: list[str] | None) -> None:
    assert A.final_boxes(text) == boxes


def test_has_boxed_several() -> None:
    assert has_boxed(f"{B}{{1}} and {B}{{2}}")
    assert not has_boxed(f"{B}{{1}} and {B}{{}}")
    assert not has_boxed(f"{B}{{1}} and {B}{{2")


def test_exact_path_defers_where_math_verify_may_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unequal numbers within math-verify's float tolerance, assignments on both sides and
    several answers are left to math-verify; everything else is decided exactly."""
    calls: list[str] = []
    real = A._mv_parse

    def spy(latex: str) -> list[object]:
        calls.append(latex)
        return real(latex)

    monkeypatch.setattr(A, "_mv_parse", spy)
    A.clear_caches()
    assert check(f"{B}{{0.1234568}}", "0.1234567") == Verdict(True, "boxed", "math_verify")
    assert check(f"{B}{{y = 3}}", "x = 3") == Verdict(False, "boxed", "math_verify")
    assert check(f"{B}{{3}}{B}{{5}}", "3, 5") == Verdict(True, "boxed", "math_verify")
    assert "0.1234568" in calls and "y = 3" in calls and "3,5" in calls
    calls.clear()
    assert check(f"{B}{{0.12346}}", "0.1234567") == Verdict(False, "boxed", "exact")
    assert check(f"{B}{{x = 3}}", "3") == Verdict(True, "boxed", "exact")
    assert check(f"{B}{{5 \\text{{ percent}}}}", "0.05") == Verdict(True, "boxed", "exact")
    assert calls == []


@pytest.mark.parametrize("text", ["5 million", "5 squared", "3 halves", "2 dozen", "5 thousand"])
def test_value_words_are_not_units(text: str) -> None:
    assert to_number(text) is None
