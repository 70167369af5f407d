"""Log input columns: ``template``, ``count`` and ``last_ts`` exist only with ``dedup=true``."""

from __future__ import annotations

import pytest

from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.diagnostics import CompileError

SPEC = """recipe t "Name log templates."
input logs: log with path="app.log"{dedup}
filter logs where sql "level = 'ERROR'"
map logs -> name: str \"\"\"{{{{ chunk.{column} }}}}: {{{{ chunk.text }}}}\"\"\"
output name
"""


@pytest.mark.parametrize("column", ["template", "count", "last_ts"])
def test_dedup_log_rows_have_the_template_columns(column: str) -> None:
    plan = compile_text(SPEC.format(dedup=", dedup=true", column=column), "t.rlm")
    assert plan.step("input-logs").options["dedup"] is True


def test_plain_log_rows_lack_count_with_a_hint() -> None:
    with pytest.raises(CompileError) as caught:
        compile_text(SPEC.format(dedup="", column="count"), "t.rlm")
    assert str(caught.value) == (
        "t.rlm:4:35: error: the rows have no column 'count'\n"
        '    4 | map logs -> name: str """{{ chunk.count }}: {{ chunk.text }}"""\n'
        "      |                                   ^^^^^\n"
        "      = hint: only deduplicated logs have 'count': declare input logs: log with "
        "dedup=true\n"
        "1 error"
    )


def test_dedup_does_not_invent_other_columns() -> None:
    with pytest.raises(CompileError) as caught:
        compile_text(SPEC.format(dedup=", dedup=true", column="counts"), "t.rlm")
    assert "the rows have no column 'counts'" in str(caught.value)
    assert "hint: did you mean 'count'?" in str(caught.value)
