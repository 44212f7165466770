"""The Pólya heuristic catalog, selection from the spec, and prompt messages."""

from __future__ import annotations

import re

import pytest
from polya_trainer.data import heuristics as H
from polya_trainer.spec import HEURISTIC_ID, HeuristicsSpec
from polya_trainer.verify.answers import extract_answer, is_correct
from pydantic import ValidationError

ALL_EXEMPLARS = [(h.id, i, e) for h in H.CATALOG for i, e in enumerate(h.exemplars)]

# The first 16 (GSM8K-oriented) prefix is part of the contract: changing it changes datasets.
FIRST_16 = [
    "decomposing_recombining", "working_backwards", "setting_up_equations",
    "logical_step_by_step", "look_at_unknown", "use_all_data", "auxiliary_elements",
    "specialization", "analogy", "restate_problem", "examine_guess", "related_problem",
    "draw_figure", "check_result", "derive_differently", "auxiliary_problem",
]


def test_catalog_shape() -> None:
    assert len(H.CATALOG) >= 20
    ids = H.ids()
    assert len(set(ids)) == len(ids)
    assert ids[:16] == FIRST_16
    for h in H.CATALOG:
        assert re.fullmatch(HEURISTIC_ID, h.id) and len(h.id) <= 63
        assert h.id != "none"
        assert h.name and len(h.description) > 40
        assert len(h.exemplars) >= 2
        assert len({e.question for e in h.exemplars}) == len(h.exemplars)
    names = [h.name for h in H.CATALOG]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("hid", "i", "ex"), ALL_EXEMPLARS,
                         ids=[f"{h}-{i}" for h, i, _ in ALL_EXEMPLARS])
def test_exemplar_answers_are_correct(hid: str, i: int, ex: H.Exemplar) -> None:
    got = extract_answer(ex.solution)
    assert got is not None and got.method == "boxed", hid
    assert ex.solution.rstrip().count("\\boxed{") == 1
    assert is_correct(ex.solution, ex.answer, allow_fallback=False)
    assert not is_correct(ex.solution, str(float(ex.answer) + 1))


def test_exemplar_questions_unique_across_catalog() -> None:
    qs = [e.question for _, _, e in ALL_EXEMPLARS]
    assert len(set(qs)) == len(qs)


def test_get() -> None:
    assert H.get("analogy").name == "Analogy"
    assert H.get("none") is H.STAR
    with pytest.raises(KeyError, match="unknown heuristic 'nope'"):
        H.get("nope")


def test_select_default_and_count() -> None:
    assert [h.id for h in H.select(HeuristicsSpec())] == FIRST_16
    assert [h.id for h in H.select(HeuristicsSpec(count=3))] == FIRST_16[:3]
    full = H.select(HeuristicsSpec(count=min(len(H.CATALOG), 64)))  # 64: the spec's limit
    assert full == list(H.CATALOG[:64])
    # nested prefixes: a smaller count is a prefix of a larger one
    assert H.select(HeuristicsSpec(count=8)) == H.select(HeuristicsSpec(count=20))[:8]


def test_catalog_allows_the_papers_n_64() -> None:
    """The paper's ablations use n = 32 and n = 64: both come from the catalog alone."""
    assert len(H.CATALOG) >= 64
    assert [h.id for h in H.select(HeuristicsSpec(count=64))] == H.ids()[:64]
    assert H.select(HeuristicsSpec(count=32)) == H.select(HeuristicsSpec(count=64))[:32]


def test_select_count_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(H, "CATALOG", H.CATALOG[:20])
    with pytest.raises(ValueError, match=r"heuristics\.count is 64"):
        H.select(HeuristicsSpec(count=64))


def test_select_ids_in_given_order() -> None:
    spec = HeuristicsSpec(ids=["symmetry", "analogy"])
    assert [h.id for h in H.select(spec)] == ["symmetry", "analogy"]


@pytest.mark.parametrize(("ids", "msg"), [
    (["analogy", "nope"], r"heuristics\.ids\[1\]: unknown heuristic 'nope'"),
    (["analogy", "analogy"], r"heuristics\.ids\[1\]: duplicate heuristic 'analogy'"),
])
def test_select_ids_errors(ids: list[str], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        H.select(HeuristicsSpec(ids=ids))


def _custom(hid: str) -> dict[str, object]:
    return {"id": hid, "name": "Look at units", "description": "Track the unit of every number.",
            "exemplars": [{"question": "2 m plus 30 cm in cm?",
                           "solution": "2 m = 200 cm; 200 + 30 = \\boxed{230}", "answer": "230"}]}


def test_select_custom_appended_and_converted() -> None:
    spec = HeuristicsSpec.model_validate({"count": 2, "custom": [_custom("look_at_units")]})
    sel = H.select(spec)
    assert [h.id for h in sel] == [*FIRST_16[:2], "look_at_units"]
    c = sel[-1]
    assert isinstance(c, H.Heuristic) and isinstance(c.exemplars[0], H.Exemplar)
    assert c.exemplars[0].answer == "230" and "Look at units" in c.instruction()
    # custom heuristics may cover a count beyond the catalog (a shorter one here: the real
    # catalog already reaches the largest count the spec allows)
    short = H.CATALOG[:20]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(H, "CATALOG", short)
        spec = HeuristicsSpec.model_validate(
            {"count": len(short) + 1, "custom": [_custom("look_at_units")]})
        assert len(H.select(spec)) == len(short) + 1


@pytest.mark.parametrize(("spec", "msg"), [
    ({"count": 2, "custom": [_custom("analogy")]},
     r"heuristics\.custom\[0\]\.id: 'analogy' is a catalog heuristic"),
    ({"ids": ["symmetry"], "custom": [_custom("symmetry")]},
     r"heuristics\.custom\[0\]\.id: 'symmetry' is a catalog heuristic"),
    ({"custom": [_custom("mine"), _custom("mine")]},
     r"heuristics\.custom\[1\]\.id: duplicate heuristic 'mine'"),
    ({"custom": [_custom("none")]}, r"heuristics\.custom\[0\]\.id: 'none' is reserved"),
])
def test_select_custom_errors(spec: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        H.select(HeuristicsSpec.model_validate(spec))


def test_spec_rejects_both_selectors() -> None:
    with pytest.raises(ValidationError):
        HeuristicsSpec(count=2, ids=["analogy"])


def test_instruction_text() -> None:
    h = H.get("working_backwards")
    text = h.instruction()
    assert "Working backwards" in text and h.description in text and "\\boxed{}" in text
    assert "\\boxed{}" in H.STAR.instruction() and "heuristic" not in H.STAR.instruction()


def test_build_messages_shape() -> None:
    h = H.get("analogy")
    msgs = H.build_messages(h, "What is 6 x 7?")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant",
                                         "user"]
    assert msgs[0]["content"] == h.instruction()
    assert msgs[1]["content"].startswith(h.exemplars[0].question)
    assert msgs[2]["content"] == h.exemplars[0].solution
    assert msgs[-1]["content"].startswith("What is 6 x 7?")
    assert all(H.ANSWER_REQUEST in m["content"] for m in msgs if m["role"] == "user")

    one = H.build_messages(h, "Q?", n_exemplars=1)
    assert [m["role"] for m in one] == ["system", "user", "assistant", "user"]
    zero = H.build_messages(h, "Q?", n_exemplars=0)
    assert [m["role"] for m in zero] == ["system", "user"]

    nosys = H.build_messages(h, "Q?", system=False)
    assert nosys[0]["role"] == "user" and nosys[0]["content"].startswith(h.instruction())
    assert len(nosys) == 5


def test_plain_and_star_messages() -> None:
    plain = H.plain_messages("What is 2 + 2?")
    assert plain == [{"role": "user", "content": f"What is 2 + 2?\n\n{H.ANSWER_REQUEST}"}]
    assert H.build_messages(H.STAR, "What is 2 + 2?") == plain
    assert H.plain_messages("Q", system="Be brief.")[0] == {"role": "system",
                                                           "content": "Be brief."}


def test_messages_render_with_a_chat_template() -> None:
    """The messages go through a real (ChatML) Jinja chat template without errors."""
    from transformers.utils.chat_template_utils import render_jinja_template

    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                "<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
    rendered, _ = render_jinja_template(
        conversations=[H.build_messages(H.CATALOG[0], "What is 2 + 2?")],
        chat_template=template)
    assert rendered[0].count("<|im_start|>") == 7
    assert H.CATALOG[0].exemplars[1].solution in rendered[0]


def test_as_dict_roundtrip() -> None:
    d = H.get("symmetry").as_dict()
    assert d["id"] == "symmetry" and len(d["exemplars"]) == 2
    assert H.Heuristic(d["id"], d["name"], d["description"],
                       tuple(H.Exemplar(**e) for e in d["exemplars"])) == H.get("symmetry")
