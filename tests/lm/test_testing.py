"""The deterministic test LM: its prompt conventions and its options."""

from __future__ import annotations

import pytest

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm.testing import compute, parse_options


@pytest.mark.parametrize(("prompt", "kind", "answer"), [
    ('COUNT "err"\nerr one\nok\nerr two', "int", "2"),
    ('FIND "key"\nno\nthe key is here\n', "list[str]", '["the key is here"]'),
    ('FIND "key"\nnothing\n', "str", "NONE"),
    ("LABELS\nq label=human\nq label=entity\nq none", "list[str]", '["human", "entity"]'),
    ("NUMBERS\n[3, 1]\n[\"record 2\"]", "list[int]", "[3, 1, 2]"),
    ('MERGE\n[["a"], ["b", "a"], []]', "list[str]", '["a", "b"]'),
    ("SUM\n[4, 5]", "int", "9"),
    ('YES IF "x"\nabc\nxyz', "bool", "True"),
    ("just text\nmore", "str", "just text"),
    ("Where is the human here?", "Literal['entity', 'human']", "human"),
    ("No label word", "Literal['entity', 'human']", "entity"),
    ("no number here", "Union[int, NoneType]", "0"),  # an int? answer is still an int
    ('COUNT "a"\na\nb\na', "Optional[int]", "2"),
])
def test_test_lm_conventions(prompt, kind, answer):
    assert compute(prompt, kind) == answer


def test_test_lm_options():
    assert parse_options("test:window=4096,fail=0.2", {"seed": 3}) == {
        "window": 4096, "fail": 0.2, "seed": 3}
    with pytest.raises(LMError, match="unknown test LM option"):
        parse_options("test:speed=9", {})
