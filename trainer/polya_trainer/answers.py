"""Final-answer extraction and verification.

``extract_answer`` finds the final answer in a model's response: the last ``\\boxed{...}`` (or
``\\fbox{...}``) with balanced braces, else a GSM8K ``#### n`` line, else the last number in the
text (flagged ``fallback=True``).

``is_correct`` / ``check_many`` compare it with a gold answer:

* **Exact path.** When both sides normalise to a plain number (integers, decimals, thousands
  commas ``1,000``, currency ``$``/``\\$``, trailing unit words ``72 dollars`` or
  ``\\text{ cm}``, ``a/b``, ``\\frac{a}{b}``/``\\dfrac``, negatives, ``1e3``, ``1.5\\times10^{3}``,
  ``%``) they are compared exactly with :class:`fractions.Fraction`, without math-verify.
  If the two numbers differ and one of them has no finite decimal expansion (``1/3`` against
  ``0.333333``), math-verify decides, so its rounding convention applies.
* **Percent rule.** ``p%`` equals ``x`` when ``x == p`` or ``x == p/100``: ``50%`` matches both
  ``50`` (GSM8K style, where golds for "what percent" questions are bare numbers) and ``0.5``
  (math-verify's convention; math-verify 0.9.0 itself accepts both too). Two percents compare
  as numbers.
* **Everything else** goes to ``math_verify.parse``/``verify``, the gold parsed once and cached;
  verdicts are cached per (gold text, answer text), since k samples often repeat an answer.

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
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "Extracted",
    "Gold",
    "check_many",
    "clear_caches",
    "extract_answer",
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

Method = Literal["boxed", "gsm8k", "last_number"]


@dataclass(frozen=True, slots=True)
class Extracted:
    """A final answer found in a response."""

    value: str
    method: Method
    fallback: bool = False


# ----------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_GSM_RE = re.compile(r"####\s*([^\n]*)")
_NUM_TOKEN = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|-?\.\d+"
_LAST_RE = re.compile(
    r"-?\\[dt]?frac\{-?\d+\}\{-?\d+\}|(?<![\w.])(?:" + _NUM_TOKEN + r")(?!\d)"
)


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


def has_boxed(text: str) -> bool:
    """True when the text has a complete, non-empty \\boxed{...} (format reward)."""
    got = last_boxed(text)
    return bool(got and got.strip())


def extract_answer(text: str) -> Extracted | None:
    """The final answer of a response; None if there is none.

    An empty last ``\\boxed{}`` counts as no answer (no fallback to other numbers).
    """
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        boxed = boxed.strip()
        return Extracted(boxed, "boxed") if boxed else None
    gsm = _GSM_RE.findall(text)
    if gsm and gsm[-1].strip():
        return Extracted(gsm[-1].strip(), "gsm8k")
    nums = _LAST_RE.findall(text)
    if nums:
        return Extracted(nums[-1], "last_number", fallback=True)
    return None


# ----------------------------------------------------------------------------- numbers

_WRAP_RE = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox|operatorname)\s*"
                      r"\{([^{}]*)\}")
_SPACES_RE = re.compile(r"\\[,!;: ]|~|\\quad|\\qquad")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_VAR_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*")
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
    r"(?:\s+(?!(?:pi|sqrt|and|or|to|times|cdot|plus|minus|over)\b)[A-Za-z][A-Za-z]+\.?)*"
)


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
    s = s.strip().lstrip("€£¥").strip().rstrip(".").strip()
    return _VAR_RE.sub("", s, count=1)


def _dec(s: str) -> Fraction:
    return Fraction(s.replace(",", "").rstrip(".") or "0")


def to_number(text: str) -> tuple[Fraction, bool] | None:
    """(value, is_percent) if ``text`` is a plain number as described in the module doc."""
    if len(text) > 200:
        return None
    s = _plain(text)
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
    return val, m["pct"] is not None


def _terminates(x: Fraction) -> bool:
    """True when x has a finite decimal expansion."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _numbers_equal(pred: tuple[Fraction, bool], gold: tuple[Fraction, bool]) -> bool | None:
    """Exact comparison; None when math-verify should decide (rounded non-terminating values)."""
    (p, p_pct), (g, g_pct) = pred, gold
    if p_pct == g_pct:
        candidates = [(p, g)]
    elif p_pct:  # pred "50%" vs gold 50 or 0.5
        candidates = [(p, g), (p / 100, g)]
    else:  # gold "50%" vs pred 50 or 0.5
        candidates = [(p, g), (p, g / 100)]
    if any(a == b for a, b in candidates):
        return True
    if all(_terminates(a) and _terminates(b) for a, b in candidates):
        return False
    return None


# ----------------------------------------------------------------------------- math-verify glue

_RISKY_RE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?[^{}]*\^|\^\s*\{?\s*[-+]?\d{5,}|\d{4,}\s*!")


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
    from math_verify import parse

    timeout = MV_TIMEOUT_S if _alarm_ok() else None
    try:
        return parse(f"${latex}$", parsing_timeout=timeout)  # type: ignore[arg-type]
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
    boxed = last_boxed(gold)
    if boxed is not None:
        return boxed.strip()
    return gold.strip()


@lru_cache(maxsize=65536)
def parse_gold(gold: str) -> Gold:
    """Parse a gold answer once (GSM8K "... #### 72", a plain value, LaTeX, a \\boxed solution)."""
    text = _gold_text(gold)
    return Gold(raw=gold, text=text, number=to_number(text) if text else None)


# ----------------------------------------------------------------------------- checking


def is_correct(prediction: str, gold: str | Gold, *, allow_fallback: bool = True) -> bool:
    """True when the prediction's final answer equals the gold answer.

    ``allow_fallback=False`` ignores answers found only as "the last number in the text".
    """
    g = gold if isinstance(gold, Gold) else parse_gold(gold)
    if not g.text:
        return False
    ext = extract_answer(prediction)
    if ext is None or (ext.fallback and not allow_fallback):
        return False
    pred_num = to_number(ext.value)
    if pred_num is not None and g.number is not None:
        same = _numbers_equal(pred_num, g.number)
        if same is not None:
            return same
    if not _guarded(ext.value):
        return False
    key = (g.text, ext.value)
    verdict = _VERDICTS.get(key)
    if verdict is None:
        gold_mv = g.parsed()
        pred_mv = _mv_parse(ext.value) if gold_mv else []
        verdict = bool(pred_mv) and _mv_verify(gold_mv, pred_mv)
        if len(_VERDICTS) >= VERDICT_CACHE_SIZE:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return verdict


def clear_caches() -> None:
    """Forget parsed golds and cached math-verify verdicts."""
    parse_gold.cache_clear()
    _VERDICTS.clear()


def _check_chunk(pairs: list[tuple[str, str]]) -> list[bool]:
    return [is_correct(p, g) for p, g in pairs]


def check_many(
    predictions: Sequence[str],
    golds: Sequence[str | Gold],
    *,
    processes: int = 0,
    chunk_size: int = 512,
    mp_context: str = "spawn",
) -> list[bool]:
    """``is_correct`` over pairs, in order.

    With ``processes > 1`` and at least ``PROCESS_MIN_BATCH`` pairs, chunks run in a process
    pool (``mp_context``; spawn is safe next to threads and torch). Serial otherwise.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} golds")
    if processes <= 1 or len(predictions) < PROCESS_MIN_BATCH:
        return [is_correct(p, g) for p, g in zip(predictions, golds, strict=True)]
    pairs = [(p, g.raw if isinstance(g, Gold) else g) for p, g in zip(predictions, golds,
                                                                       strict=True)]
    chunks = [pairs[i:i + chunk_size] for i in range(0, len(pairs), chunk_size)]
    ctx = multiprocessing.get_context(mp_context)
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        return [ok for part in pool.map(_check_chunk, chunks) for ok in part]
