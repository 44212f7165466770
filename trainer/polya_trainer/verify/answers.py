"""Final-answer extraction and verification.

**Extraction** (``extract_answer``) finds the final answer of a response, and says how
(``Extracted.method``). Every explicit final-answer format that common prompts ask for counts,
and of those the one that comes last in the text is the answer:

* ``boxed``: the ``\\boxed{...}`` / ``\\fbox{...}`` answers at the end of the text. Several
  boxes count together, as math-verify counts them (``latex2sympy2_extended.
  math_normalization.extract_boxed_content``, mode "last", which math-verify's
  ``parser.extract_latex`` uses for its ``\\boxed{.+}`` pattern): walking back from the last
  box, an earlier box joins when fewer than 10 characters separate them, or when it differs
  from the box after it and fewer than 70 characters with "and", "or", "," or ";" separate
  them. Repeats in a row are dropped. The contents are joined by "," (``\\boxed{1}\\boxed{2}``
  reads as ``1,2``, a set). A last box left open (the response was cut off) or empty means
  *no answer* unless an explicit answer follows it (math-verify would fall back to an earlier
  box; a cut-off response is not credited).
* ``gsm8k``: the last ``#### n`` line (GSM8K's own format).
* ``answer_line``: the last ``Answer: x`` (any case, ``**Answer:**`` too), the value running to
  the end of its line, or on the next line when ``Answer:`` ends its own: DAPO-Math-17k's
  "Answer: $Answer" and lighteval's "ANSWER: $ANSWER".
* ``answer_is``: the last "the answer is x" / "the final answer is x" statement (GSM8K-CoT's
  "The answer is 6.", Llama's "The final answer is 29", Minerva's "Final Answer: The final
  answer is $x$. I hope it is correct."). It must open a statement (at the start, after
  punctuation or "so", "thus", "hence", "therefore", "then", "and"): "to check whether the
  answer is 5 we substitute" is not one.

* ``last_number``: the last number in the text, only when the caller asks for this fallback
  (``allow_fallback=True``; the spec's ``answers.lastNumberFallback``) and nothing explicit was
  found. Off by default: a response cut off at "... then we subtract 3 from" must not score
  against gold 3, and a bare number in running text is not a final answer.
* ``none``: nothing was found.

A statement's value is its ``$...$`` / ``\\(...\\)`` math if it starts with one, else the
text up to the end of its sentence. A value holding a box leaves the answer to the box; prose
("the number of apples left") is no answer; neither is an empty statement.

**Checking** (``check`` returns a :class:`Verdict`; ``is_correct`` / ``check_many`` the bool):

* **Exact path**, used only when its verdict cannot differ from math-verify's except where
  math-verify is known to be wrong (listed below). Both sides must be single plain numbers
  (integers, decimals, thousands commas ``1,000``, currency ``$``/``\\$``, trailing unit words
  ``72 dollars`` or ``\\text{ cm}``, ``a/b``, ``\\frac{a}{b}``, negatives, ``1e3``,
  ``1.5\\times10^{3}``, ``%``, an assignment ``x = 5`` on one side only). Equal values are
  correct. Unequal values are wrong unless they are within math-verify's tolerance (it rounds
  floats to 6 decimals, ``grader.sympy_numeric_eq``; sympy floats keep 15 digits), in which
  case math-verify decides.
* **Percent rule.** ``p%`` equals ``x`` when ``x == p`` (GSM8K golds for "what percent"
  questions are bare numbers) or ``x == p/100`` (``50%`` is ``0.5``). math-verify agrees
  (for integers through ``grader.get_pct_val`` or ``simplify``; for floats by value) except
  for ``12.5%`` against ``12.5``, which it rejects.
* **Everything else** (several answers, sets, tuples, intervals, equations, assignments on
  both sides, symbolic LaTeX) goes to ``math_verify.parse``/``verify`` with each side written as
  ``\\boxed{...}``; the gold is parsed once and cached, verdicts per (gold, answer) text.

Where the exact path departs from math-verify on purpose (tests/unit/test_answers_regression.py
names each case): unit words math-verify does not strip (``72 dollars``, ``\\text{12 apples}``:
it reads a product of symbols), ``1e3`` (it reads ``1*e*3``), ``12.5%`` against ``12.5`` and
``5%`` against ``5.0`` (it equates them only for integers), a trailing period (``100.``, which
it cannot parse), cut-off boxes, text with no explicit final answer (math-verify takes its
last number), and a box followed by a different stated answer (math-verify prefers the box;
here the last explicit answer counts).

**Bounded time.** Inputs that could make sympy run away are refused (answer longer than
``MAX_ANSWER_CHARS``, nested powers, exponents of 5+ digits, factorials of 4+ digit numbers);
this rule applies in every context so results never depend on the calling thread. In addition,
in the main thread, math-verify's own ``signal.alarm`` timeouts (``MV_TIMEOUT_S``) are used,
unless another alarm is already pending (e.g. pytest-timeout), which they would cancel. Off the
main thread (where ``signal.alarm`` is unavailable) parse/verify run with timeouts disabled
and rely on the input guard. ``check_many(..., processes=n)`` runs large batches in worker
processes, whose main threads get the alarm timeouts again.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "METHODS",
    "Extracted",
    "Gold",
    "Verdict",
    "check",
    "check_many",
    "check_many_verdicts",
    "clear_caches",
    "extract_answer",
    "extraction_counts",
    "has_boxed",
    "is_correct",
    "parse_gold",
    "to_number",
]

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 512
"""Answers (and golds) longer than this are not sent to math-verify (counted wrong)."""
MV_TIMEOUT_S = 5
"""math-verify parse/verify timeout in the main thread (whole seconds, via signal.alarm)."""
PROCESS_MIN_BATCH = 2048
"""check_many uses worker processes only for batches at least this big."""

VERDICT_CACHE_SIZE = 65536
"""math-verify verdicts kept per (gold, answer) text pair: k samples often repeat an answer."""

_VERDICTS: dict[tuple[str, str], bool] = {}

Method = Literal["boxed", "gsm8k", "answer_line", "answer_is", "last_number", "none"]
METHODS: tuple[Method, ...] = ("boxed", "gsm8k", "answer_line", "answer_is", "last_number",
                               "none")
"""How an answer was extracted, in the order reports list them."""
DecidedBy = Literal["exact", "math_verify", "none"]


@dataclass(frozen=True, slots=True)
class Extracted:
    """A final answer found in a response.

    ``value`` is what is compared: for several boxes, their contents joined by ",", as
    math-verify joins them. ``parts`` holds the boxes one by one.
    """

    value: str
    method: Method
    fallback: bool = False
    parts: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check: correct or not, how the answer was found, who decided."""

    correct: bool
    method: Method
    decided_by: DecidedBy


# ----------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_GSM_RE = re.compile(r"####\s*([^\n]*)")
_NUM_TOKEN = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|-?\.\d+"
_LAST_RE = re.compile(
    r"-?\\[dt]?frac\{-?\d+\}\{-?\d+\}|(?<![\w.])(?:" + _NUM_TOKEN + r")(?!\d)"
)
_SEPARATOR_RE = re.compile(r"\b(?:and|or)\b|,|;")


def _box_contents(text: str, start: int) -> tuple[str, int] | None:
    """Contents of the group after a \\boxed command at ``start``, and the end index."""
    i = start
    n = len(text)
    while i < n and text[i] == " ":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":
        # \boxed 5 : a single token up to whitespace or '$'
        m = re.match(r"[^\s$]+", text[i:])
        return (m.group(0), i + m.end()) if m else None
    depth = 0
    for j in range(i, n):
        c = text[j]
        if c == "{" and (j == 0 or text[j - 1] != "\\"):
            depth += 1
        elif c == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
    return None  # unbalanced: the response was cut off


def last_boxed(text: str) -> str | None:
    """Contents of the last complete \\boxed{...} / \\fbox{...}, or None."""
    found = None
    for m in _BOX_RE.finditer(text):
        got = _box_contents(text, m.end())
        if got is not None:
            found = got[0]
    return found


def _closing_brace(text: str, open_at: int, stop: int) -> int | None:
    """Index of the brace closing the one at ``open_at`` (before ``stop``), counting every
    brace as math-verify does (``find_content_boundaries``)."""
    depth = 1
    for j in range(open_at + 1, stop):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def _box_group(text: str) -> tuple[int, list[str] | None]:
    """(where the final group of boxed answers starts, their contents in order); (-1, [])
    without a box; contents None when the last box is cut off (see the module doc)."""
    results: list[str] = []
    stop = len(text)
    later_start: int | None = None
    first = -1
    pos = len(text)
    while True:
        b = text.rfind("\\boxed", 0, pos)
        f = text.rfind("\\fbox", 0, pos)
        if b < 0 and f < 0:
            break
        start = max(b, f)
        j = start + (6 if b > f else 5)
        while j < stop and text[j].isspace():
            j += 1
        if j >= stop:
            if not results:
                return start, None
            break
        if text[j] != "{":
            if not results:  # \boxed 5: one token up to whitespace or '$'
                m = re.match(r"[^\s$]+", text[j:stop])
                return start, [m.group(0)] if m else None
            break
        close = _closing_brace(text, j, stop)
        if close is None:
            if not results:
                return start, None
            break
        content = text[j + 1:close].strip()
        if later_start is not None:
            between = text[close + 1:later_start]
            joins = len(between) < 10 or (content != results[-1] and len(between) < 70
                                          and _SEPARATOR_RE.search(between) is not None)
            if not joins:
                break
        if not results or results[-1] != content:
            results.append(content)
        later_start = first = start
        stop = start
        pos = start
    return first, results[::-1]


def final_boxes(text: str) -> list[str] | None:
    """The final group of boxed answers, in order (see the module doc); [] when the text has
    no box, None when the last box is cut off."""
    return _box_group(text)[1]


def has_boxed(text: str) -> bool:
    """True when the text ends its answer in complete, non-empty boxes (format reward)."""
    boxes = final_boxes(text) if text else []
    return bool(boxes) and all(b.strip() for b in boxes)


# "Answer: x" (DAPO, lighteval's "ANSWER: $ANSWER"; also after "Final Answer:"), the value
# running to the end of its line, or on the next line when "Answer:" ends its own.
_ANSWER_LINE_RE = re.compile(r"(?<![A-Za-z])answer\**\s*:\s*([^\n]+)", re.I)
# "the answer is x", "the final answer is x" (GSM8K-CoT, Minerva's "The final answer is $x$.
# I hope it is correct.", lighteval's "Therefore, the final answer is: ...").
_ANSWER_IS_RE = re.compile(r"(?<![A-Za-z])answer\s+is\b\s*:?[ \t]*([^\n]*)", re.I)
# ... only where it opens a statement: at the start, after punctuation or "so/thus/...".
# "whether the answer is 5 we ..." is not one.
_LEAD_RE = re.compile(r"(?:^|[.!?:;,\n]|\b(?:so|thus|hence|therefore|then|and))[ \t*]*"
                      r"(?:the\s+)?(?:final\s+)?$", re.I)
_MATH_ENV_RE = re.compile(r"\$\$(.+?)\$\$|\$((?:\\\$|[^$])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
_HOPE_RE = re.compile(r"\.?\s*I hope it is correct", re.I)  # Minerva's closing words
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _stated_value(raw: str) -> str | None:
    """The answer in the rest of an answer statement; None when it holds a box (the box is
    the answer) or is prose rather than a number or math ("the number of apples")."""
    s = _HOPE_RE.split(raw, maxsplit=1)[0].strip().strip("*").strip()
    math = _MATH_ENV_RE.match(s)
    if math:
        s = next(g for g in math.groups() if g is not None)
    else:
        s = _SENTENCE_END_RE.split(s, maxsplit=1)[0]
    s = s.strip().rstrip(".").strip()
    if not s or "\\boxed" in s or "\\fbox" in s:
        return None
    if _scalar(s) is None and _PROSE_RE.search(_WRAP_RE.sub(" ", s)):
        return None
    return s


def _statements(text: str) -> list[tuple[int, Extracted]]:
    """The last readable "Answer: x" line and "the (final) answer is x" statement, each with
    where its value starts."""
    found: list[tuple[int, Extracted]] = []
    if "nswer" not in text and "NSWER" not in text:
        return found
    for regex, method in ((_ANSWER_LINE_RE, "answer_line"), (_ANSWER_IS_RE, "answer_is")):
        last: tuple[int, Extracted] | None = None
        for m in regex.finditer(text):
            if method == "answer_is" and not _LEAD_RE.search(
                    text, max(0, m.start() - 32), m.start()):
                continue
            value = _stated_value(m.group(1))
            if value is not None:
                last = (m.start(1), Extracted(value, method))  # type: ignore[arg-type]
        if last is not None:
            found.append(last)
    return found


def extract_answer(text: str, *, allow_fallback: bool = False) -> Extracted | None:
    """The final answer of a response; None if there is none.

    The explicit answer that comes last counts: the final group of boxes, the last
    ``#### n`` line, the last ``Answer: x`` line, the last "the (final) answer is x"
    statement. An empty last ``\\boxed{}`` or a cut-off last box count as no answer unless an
    explicit answer follows them. The last number in the text counts only with
    ``allow_fallback=True`` (flagged ``fallback=True``) and only when there is no explicit
    answer at all.
    """
    if not text:
        return None
    found: list[tuple[int, Extracted | None]] = []
    if "\\boxed" in text or "\\fbox" in text:
        at, boxes = _box_group(text)
        if boxes is None or (boxes and not boxes[-1]):
            found.append((at, None))  # cut off or empty: no answer
        elif boxes := [b for b in boxes if b]:
            found.append((at, Extracted(",".join(boxes), "boxed", parts=tuple(boxes))))
    gsm = list(_GSM_RE.finditer(text))
    if gsm and gsm[-1].group(1).strip():
        found.append((gsm[-1].start(), Extracted(gsm[-1].group(1).strip(), "gsm8k")))
    found += _statements(text)
    if found:
        return max(found, key=lambda f: f[0])[1]
    if allow_fallback:
        nums = _LAST_RE.findall(text)
        if nums:
            return Extracted(nums[-1], "last_number", fallback=True)
    return None


# ----------------------------------------------------------------------------- numbers

_WRAP_RE = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox|operatorname)\s*"
                      r"\{([^{}]*)\}")
_SPACES_RE = re.compile(r"\\[,!;: ]|~|\\quad|\\qquad")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_PERCENT_WORD_RE = re.compile(r"\s*\b(?:percent|percentage|pct)\b")
_VAR_RE = re.compile(r"^([A-Za-z](?:_\{?\w+\}?)?)\s*=\s*")
# Words that change a number's value: never read as a unit.
_VALUE_WORDS = (r"pi|sqrt|root|and|or|to|times|cdot|plus|minus|over|less|squared|cubed|"
                r"hundreds?|thousands?|millions?|billions?|trillions?|dozens?|"
                r"half|halves|thirds?|quarters?|fourths?|fifths?|tenths?|hundredths?|"
                r"thousandths?|percent|percentage|pct|degrees?\s+below")
_DEC = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
_NUMBER_RE = re.compile(
    r"(?P<sign>[-+]?)\s*(?:"
    r"\\frac\s*\{\s*(?P<fn>[-+]?\d+)\s*\}\s*\{\s*(?P<fd>[-+]?\d+)\s*\}"
    r"|\\frac\s*(?P<sn>\d)(?P<sd>\d)"
    r"|(?P<num>" + _DEC + r")(?:\s*/\s*(?P<den>" + _DEC + r"))?"
    r"(?:[eE](?P<exp>[-+]?\d{1,4})"
    r"|\s*(?:\\times|\\cdot|\*|×)\s*10\s*\^\s*(?:\{\s*(?P<texp>[-+]?\d{1,4})\s*\}|(?P<texp1>\d)))?"
    r")\s*(?P<pct>%)?"
    # trailing unit words: whitespace-separated, 2+ letters each ("72 dollars", "3 km per hour")
    r"(?:\s+(?!(?:" + _VALUE_WORDS + r")\b)[A-Za-z][A-Za-z]+\.?)*"
)


@dataclass(frozen=True, slots=True)
class _Scalar:
    value: Fraction
    percent: bool
    variable: str | None  # "x" for "x = 5"


def _plain(s: str) -> str:
    """Strip LaTeX dressing that does not change a plain number's value."""
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("{,}", ",")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\u2212", "-").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    for _ in range(3):
        new = _WRAP_RE.sub(lambda m: " " + m.group(1) + " ", s)
        if new == s:
            break
        s = new
    s = _DEGREE_RE.sub("", _SPACES_RE.sub(" ", s))
    s = _PERCENT_WORD_RE.sub("%", s)
    return s.strip().lstrip("€£¥").strip().rstrip(".").strip()


def _dec(s: str) -> Fraction:
    return Fraction(s.replace(",", "").rstrip(".") or "0")


@lru_cache(maxsize=65536)
def _scalar(text: str) -> _Scalar | None:
    """The plain number ``text`` stands for (see the module doc), or None."""
    if len(text) > 200:
        return None
    s = _plain(text)
    var = _VAR_RE.match(s)
    if var:
        s = s[var.end():]
    m = _NUMBER_RE.fullmatch(s)
    if not m:
        return None
    try:
        if m["fn"] is not None:
            val = Fraction(int(m["fn"]), int(m["fd"]))
        elif m["sn"] is not None:
            val = Fraction(int(m["sn"]), int(m["sd"]))
        else:
            val = _dec(m["num"])
            if m["den"] is not None:
                val /= _dec(m["den"])
            exp = m["exp"] or m["texp"] or m["texp1"]
            if exp is not None:
                val *= Fraction(10) ** int(exp)
    except (ZeroDivisionError, ValueError):
        return None
    if m["sign"] == "-":
        val = -val
    return _Scalar(val, m["pct"] is not None, var.group(1) if var else None)


def to_number(text: str) -> tuple[Fraction, bool] | None:
    """(value, is_percent) if ``text`` is a plain number as described in the module doc."""
    got = _scalar(text)
    return None if got is None else (got.value, got.percent)


def _close(a: Fraction, b: Fraction) -> bool:
    """Near enough that math-verify's float rounding (6 decimals, 15 digits) might equate."""
    return abs(a - b) <= max(Fraction(1, 10**6), max(abs(a), abs(b)) / 10**14)


def _numbers_equal(pred: _Scalar, gold: _Scalar) -> bool | None:
    """Exact verdict; None when math-verify should decide."""
    if pred.variable is not None and gold.variable is not None:
        return None  # x = 1 against y = 1: math-verify compares the equations
    p, g = pred.value, gold.value
    if pred.percent != gold.percent:
        pct, bare = (p, g) if pred.percent else (g, p)
        if pct == bare:  # 50% against 50 (GSM8K "what percent" golds are bare numbers)
            return True
        if pct / 100 == bare:  # 50% against 0.5
            return True
        if _close(pct, bare) or _close(pct / 100, bare):
            return None
        return False
    if p == g:
        return True
    return None if _close(p, g) else False


# ----------------------------------------------------------------------------- math-verify glue

# Towers of powers (a^{b^c}, a^(b^c), a^b^c), exponents of 5+ digits, factorials of 4+ digits.
_RISKY_RE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\([^()]*\^|\^\s*(?:\\?\w+|\{[^{}]*\})\s*\^"
                       r"|\^\s*\{?\s*[-+]?\d{5,}|\d{4,}\s*!")


def _guarded(s: str) -> bool:
    """True when s is safe to hand to sympy without a timer."""
    return len(s) <= MAX_ANSWER_CHARS and not _RISKY_RE.search(s)


def _alarm_ok() -> bool:
    """signal.alarm timeouts are usable: main thread and no alarm of someone else pending."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        return signal.getitimer(signal.ITIMER_REAL)[0] == 0.0
    except (AttributeError, OSError):  # pragma: no cover - non-POSIX
        return False


def _mv_parse(latex: str) -> list[Any]:
    """math-verify's parse of one answer, written as a box (so its box rules apply)."""
    from math_verify import parse

    timeout = MV_TIMEOUT_S if _alarm_ok() else None
    try:
        return parse(f"\\boxed{{{latex}}}", parsing_timeout=timeout)  # type: ignore[arg-type]
    except Exception as exc:  # any math-verify failure counts as "no answer"
        log.debug("math-verify parse failed: %r", exc)
        return []


def _mv_verify(gold: list[Any], pred: list[Any]) -> bool:
    from math_verify import verify

    timeout = MV_TIMEOUT_S if _alarm_ok() else None
    try:
        return bool(verify(gold, pred, timeout_seconds=timeout))
    except Exception as exc:  # any math-verify failure counts as "no answer"
        log.debug("math-verify verify failed: %r", exc)
        return False


# ----------------------------------------------------------------------------- gold answers


@dataclass(eq=False)
class Gold:
    """A gold answer, parsed once: its answer text, plain number if any, math-verify parse."""

    raw: str
    text: str
    number: tuple[Fraction, bool] | None
    _mv: list[Any] | None = field(default=None, repr=False)

    @property
    def scalar(self) -> _Scalar | None:
        return _scalar(self.text) if self.number is not None else None

    def parsed(self) -> list[Any]:
        """math-verify's parse of the gold (computed on first use, then kept)."""
        if self._mv is None:
            self._mv = _mv_parse(self.text) if _guarded(self.text) else []
        return self._mv

    def __getstate__(self) -> dict[str, Any]:  # sympy objects stay behind; reparsed on demand
        return {"raw": self.raw, "text": self.text, "number": self.number, "_mv": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


def _gold_text(gold: str) -> str:
    """The answer part of a gold field."""
    if "####" in gold:
        tail = gold.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0].strip() if tail else ""
    if "\\boxed" in gold or "\\fbox" in gold:
        boxes = [b for b in final_boxes(gold) or [] if b]
        if boxes:
            return ",".join(boxes)
    return gold.strip()


@lru_cache(maxsize=65536)
def parse_gold(gold: str) -> Gold:
    """Parse a gold answer once (GSM8K "... #### 72", a plain value, LaTeX, a \\boxed solution)."""
    text = _gold_text(gold)
    return Gold(raw=gold, text=text, number=to_number(text) if text else None)


# ----------------------------------------------------------------------------- checking


def check(prediction: str, gold: str | Gold, *, allow_fallback: bool = False) -> Verdict:
    """Whether the prediction's final answer equals the gold answer, and how it was decided.

    ``allow_fallback=True`` also accepts an answer found only as "the last number in the
    text"; by default only an explicit final answer (``\\boxed{}``, ``#### n``, ``Answer: x``,
    "the (final) answer is x") counts.
    """
    g = gold if isinstance(gold, Gold) else parse_gold(gold)
    ext = extract_answer(prediction, allow_fallback=allow_fallback)
    if ext is None:
        return Verdict(False, "none", "none")
    if not g.text:
        return Verdict(False, ext.method, "none")
    pred_num = _scalar(ext.value) if len(ext.parts) <= 1 else None
    gold_num = g.scalar
    if pred_num is not None and gold_num is not None:
        same = _numbers_equal(pred_num, gold_num)
        if same is not None:
            return Verdict(same, ext.method, "exact")
    if not _guarded(ext.value):
        return Verdict(False, ext.method, "none")
    key = (g.text, ext.value)
    verdict = _VERDICTS.get(key)
    if verdict is None:
        gold_mv = g.parsed()
        pred_mv = _mv_parse(ext.value) if gold_mv else []
        verdict = bool(pred_mv) and _mv_verify(gold_mv, pred_mv)
        if len(_VERDICTS) >= VERDICT_CACHE_SIZE:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return Verdict(verdict, ext.method, "math_verify")


def is_correct(prediction: str, gold: str | Gold, *, allow_fallback: bool = False) -> bool:
    """True when the prediction's final answer equals the gold answer (see :func:`check`)."""
    return check(prediction, gold, allow_fallback=allow_fallback).correct


def extraction_counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """How many answers each extraction method found (every method listed, zeros too)."""
    seen = Counter(v.method for v in verdicts)
    return {m: seen.get(m, 0) for m in METHODS}


def clear_caches() -> None:
    """Forget parsed golds and cached math-verify verdicts."""
    parse_gold.cache_clear()
    _scalar.cache_clear()
    _VERDICTS.clear()


def _check_chunk(pairs: list[tuple[str, str]], allow_fallback: bool) -> list[Verdict]:
    return [check(p, g, allow_fallback=allow_fallback) for p, g in pairs]


def check_many_verdicts(
    predictions: Sequence[str],
    golds: Sequence[str | Gold],
    *,
    allow_fallback: bool = False,
    processes: int = 0,
    chunk_size: int = 512,
    mp_context: str = "spawn",
) -> list[Verdict]:
    """:func:`check` over pairs, in order.

    With ``processes > 1`` and at least ``PROCESS_MIN_BATCH`` pairs, chunks run in a process
    pool (``mp_context``; spawn is safe next to threads and torch). Serial otherwise.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} golds")
    if processes <= 1 or len(predictions) < PROCESS_MIN_BATCH:
        return [check(p, g, allow_fallback=allow_fallback)
                for p, g in zip(predictions, golds, strict=True)]
    pairs = [(p, g.raw if isinstance(g, Gold) else g) for p, g in zip(predictions, golds,
                                                                       strict=True)]
    chunks = [pairs[i:i + chunk_size] for i in range(0, len(pairs), chunk_size)]
    ctx = multiprocessing.get_context(mp_context)
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        return [v for part in pool.map(_check_chunk, chunks, [allow_fallback] * len(chunks))
                for v in part]


def check_many(
    predictions: Sequence[str],
    golds: Sequence[str | Gold],
    *,
    allow_fallback: bool = False,
    processes: int = 0,
    chunk_size: int = 512,
    mp_context: str = "spawn",
) -> list[bool]:
    """``is_correct`` over pairs, in order (see :func:`check_many_verdicts`)."""
    return [v.correct for v in check_many_verdicts(
        predictions, golds, allow_fallback=allow_fallback, processes=processes,
        chunk_size=chunk_size, mp_context=mp_context)]
