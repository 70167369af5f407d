"""``rlm ask``: from a question over huge inputs to a checked, costed, editable plan and its answer.

Planner stage, between the user and the compiler: :mod:`.profile` describes the inputs,
:mod:`.heuristics` and :mod:`.planner` choose a strategy of :mod:`.strategies` and fill its
slots (values, placed by :mod:`.literals`), :mod:`.ask` checks, costs and runs the spec, and
:mod:`.evidence` reads back the rows the answer stands on.
"""

from __future__ import annotations

from rlm_dsl.questions.ask import AskResult, Planned, ask, plan_question, run_planned

__all__ = ["AskResult", "Planned", "ask", "plan_question", "run_planned"]
