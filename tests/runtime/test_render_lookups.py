"""A prompt of text and plain lookups is rendered without Jinja, exactly as Jinja renders it.

:meth:`RunContext.render` fills templates made only of literal text, ``{{ name }}`` and
``{{ name.key }}`` itself (half the cost of a map call's render); every other template, and every
lookup that is not a bound name or a key of a dict, goes to Jinja. Each case here is rendered
both ways and must give the same text or the same error.
"""

from __future__ import annotations

import pytest

from rlm_dsl.compiler.templates import environment
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.steps.context import RunContext, _lookups

ROW = {"id": 7, "text": "  alpha\nbeta  ", "n": 3, "none": None, "score": 0.5, "tags": ["a"],
       "_private": "p", "nested": {"k": "v"}}
TEMPLATES = [
    'COUNT "mark"\n{{ chunk.text }}\n',
    "{{ chunk.text }}",
    "id={{ chunk.id }} n={{ chunk.n }} none={{ chunk.none }} s={{ chunk.score }}",
    "{{ chunk.tags }} {{ chunk.nested }} {{ chunk._private }}",
    "{{ topic }}: {{ chunk.text }}",  # a param
    "{{ chunk }}",
    "plain text only",
    "",
    "{{ chunk.text | upper }}",  # a filter: Jinja
    "{% if chunk.n %}{{ chunk.text }}{% endif %}",  # a statement: Jinja
    "{{ chunk['text'] }} {{ 'const' }}",  # a subscript and a constant: Jinja
    "{{ chunk.nested.k }}",  # a lookup of a lookup: Jinja
]
ERRORS = [
    "{{ chunk.missing }}",  # not a key: Jinja's undefined error
    "{{ unknown }}",
    "{{ unknown.text }}",
    "{{ chunk.items }}",  # a dict attribute: Jinja's answer (the method), not the key
    "{{ topic.text }}",  # a key of a string
]


def _ctx(**params) -> RunContext:
    return RunContext(plan=None, store=None, writer=None, ledger=None, lms={}, params=params,
                      adapter=None)


def _jinja(source: str, **variables) -> str:
    return environment().from_string(source).render(**variables).strip()


@pytest.mark.parametrize("source", TEMPLATES)
def test_the_lookup_path_renders_what_jinja_renders(source):
    ctx = _ctx(topic="birds")
    for row in (ROW, dict(ROW, text="other"), {**ROW, "chunk": "shadow"}):
        assert ctx.render(source, chunk=row) == _jinja(source, topic="birds", chunk=row)


def test_only_text_and_plain_lookups_take_the_lookup_path():
    env = environment()
    assert _lookups(env.parse("a {{ x }} {{ chunk.text }}")) == ["a ", ("x", None), " ",
                                                                ("chunk", "text")]
    for source in [*TEMPLATES[8:], "{{ chunk.items }}", "{{ chunk.keys }}"]:
        assert _lookups(env.parse(source)) is None


@pytest.mark.parametrize("source", ERRORS)
def test_a_lookup_jinja_would_refuse_or_resolve_otherwise_goes_to_jinja(source):
    ctx = _ctx(topic="birds")
    try:
        expected = _jinja(source, topic="birds", chunk=ROW)
    except Exception as exc:  # the same error, as a spec error
        with pytest.raises(SpecError, match=type(exc).__name__):
            ctx.render(source, chunk=ROW)
    else:
        assert ctx.render(source, chunk=ROW) == expected


def test_a_step_variable_shadows_a_param_as_in_jinja():
    ctx = _ctx(chunk={"text": "param"})
    assert ctx.render("{{ chunk.text }}", chunk={"text": "row"}) == "row"
    assert ctx.render("{{ chunk.text }}") == "param"
