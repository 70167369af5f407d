"""Branch overlap (executor stage): the steps of one topological generation run at once.

A plan's steps form a DAG; the steps of one *generation* (``networkx.topological_generations``:
every parent in an earlier generation) do not depend on each other, so the executor runs them
side by side — two independent map branches then take as long as the slower one instead of the
sum. LM calls stay under the same limits: every call of every step passes its model's gate
(per-LM concurrency slots and rate limits), so overlapping steps on one model share its slots and
steps on different models each use their own. Results do not depend on the interleaving: each
step reads only its parents' tables (finished in an earlier generation) and writes its own; a
reduce keeps its own order. Each step runs in a copy of the caller's context (``dspy.context``,
call scope); when steps fail, the error of the first in plan order is raised after all of them
have ended, as a serial walk would have raised it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

import networkx as nx

from rlm_dsl.compiler.plan import Plan, Step


def generations(plan: Plan) -> list[list[Step]]:
    """The plan's steps by topological generation, each generation in step-id order."""
    return [[plan.step(step_id) for step_id in sorted(generation)]
            for generation in nx.topological_generations(plan.graph)]


def run_together(jobs: list[Callable[[], None]], stopping: threading.Event) -> None:
    """Run ``jobs`` at once, one thread each (a single job in the caller's thread); wait for
    all of them, then raise the first one's error in list order. Interrupted while waiting
    (Ctrl-C), it sets ``stopping`` — maps start no new row and end unfinished — waits for the
    calls in flight, and re-raises."""
    if len(jobs) == 1:
        jobs[0]()
        return
    errors: list[BaseException | None] = [None] * len(jobs)

    def run(index: int, context: contextvars.Context) -> None:
        try:
            context.run(jobs[index])
        except BaseException as exc:  # re-raised in the caller below
            errors[index] = exc

    threads = [threading.Thread(target=run, args=(i, contextvars.copy_context()),
                                name=f"rlm-branch-{i}") for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        stopping.set()
        for thread in threads:
            thread.join()
        raise
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
