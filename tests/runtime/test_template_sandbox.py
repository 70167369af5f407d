"""Prompt templates are sandboxed and bounded: SSTI payloads and template bombs fail fast.

Specs may be written by a model (``rlm ask``), so a prompt is untrusted code: Jinja's sandbox
refuses Python internals, and :class:`~rlm_dsl.compiler.templates.PromptEnvironment` bounds the
loops, the output and ``*``/``**`` results of one render. Each payload tries to plant a file on
the host; the file must not appear, and the render must end within seconds.
"""

from __future__ import annotations

import time

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from rlm_dsl.compiler.templates import environment

SSTI = [
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ cycler | attr('__init__') | attr('__globals__') }}",
    "{% set a = '__in' ~ 'it__' %}{{ (joiner | attr(a)).__globals__.os.system('touch MARKER') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('touch MARKER') }}",
    "{{ namespace.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__.__import__('os').system('touch MARKER') }}",
    "{{ ''.format.__self__.__class__ }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
]
BOMBS = {
    "nested-range": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                    "{% endfor %}",
    "huge-range": "{% for i in range(10**9) %}{% endfor %}",
    "nested-strings": "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}"
                      "{% endfor %}",
    "output": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "repetition": "{{ 'x' * 10**10 }}",
    "power": "{{ 9 ** (9 ** 9) }}",
    "list-repetition": "{{ ([1] * 100000) * 100000 }}",
    "recursive-macro": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
}


@pytest.mark.parametrize("payload", SSTI)
def test_ssti_payloads_are_refused_at_render(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((SecurityError, UndefinedError)):
        environment().from_string(payload.replace("MARKER", str(tmp_path / "pwned"))).render()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("bomb", BOMBS.values(), ids=BOMBS.keys())
def test_template_bombs_end_within_seconds(bomb):
    started = time.monotonic()
    with pytest.raises((SecurityError, OverflowError, RecursionError)):
        environment().from_string(bomb).render()
    assert time.monotonic() - started < 15


def test_ordinary_loops_and_loop_variables_still_work():
    template = environment().from_string(
        "{% for x in items %}{{ loop.index }}/{{ loop.length }}={{ x }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}")
    assert template.render(items=["a", "b", "c"]) == "1/3=a, 2/3=b, 3/3=c"


SPEC = '''
    recipe bombs "A model-written spec."
    input items: lines
    map items -> n: int """
      {prompt}
      {{ chunk.text }}
    """
    output n
'''


@pytest.mark.parametrize(("prompt", "error"), [
    ("{% set a = '__cla' ~ 'ss__' %}{{ '' | attr(a) }}",
     "template error: SecurityError: access to attribute '__class__' of 'str' object is unsafe"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "template error: SecurityError: the template's loops ran more than 1,000,000 times"),
])
def test_rlm_run_stops_a_hostile_prompt_with_a_spec_error(cli, spec, tmp_path, prompt, error):
    recipe = spec(SPEC.replace("{prompt}", prompt))
    items = tmp_path / "items.txt"
    items.write_text("1\n2\n")
    started = time.monotonic()
    code, _, err = cli("run", recipe, "--lm", "test", "-q", "-i", f"items={items}")
    assert time.monotonic() - started < 30
    assert code == 1 and error in err and "Traceback" not in err


def test_rlm_check_names_attr_filters_reaching_for_internals(cli, spec):
    recipe = spec(SPEC.replace("{prompt}", "{{ cycler | attr('__init__') }}"))
    code, _, err = cli("check", recipe)
    assert code == 1
    assert "error: template reads the private attribute '__init__'" in err
