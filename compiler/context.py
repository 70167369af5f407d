"""The read-only context every semantic check receives: the AST, its scope and the spec text.

Built once by the driver after parsing and name resolution; ``sub_plans`` holds the compiled
recipes the spec ``use``s (by alias), so checks can look at their inputs, outputs and params.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.plan import Plan
from rlm_dsl.compiler.scope import Scope


@dataclass(frozen=True, slots=True)
class Context:
    spec: ast.Spec
    scope: Scope
    text: str
    sub_plans: dict[str, Plan] = field(default_factory=dict)

    def flows(self) -> Iterator[ast.Flow]:
        """The dataflow statements (chunk, filter, map, reduce, rlm) in spec order."""
        for stmt in self.spec.statements:
            if isinstance(stmt, ast.Flow):
                yield stmt
