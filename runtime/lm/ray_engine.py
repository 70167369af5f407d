"""The Ray executor's engine (runtime stage: LM back ends): LM calls answered by Ray actors.

``--executor ray`` keeps the driver authoritative — plan walking, budget checks, the ``lm_calls``
cache, failures, results and progress stay in the process that runs the plan — and moves only the
LM work out: :class:`RayEngine` is the *inner* engine the call gate wraps
(``GatedEngine(RayEngine(...), gate)``). It starts a pool of :class:`ModelWorker` actors, each
resolving the same model id and options in its own process (its own llama.cpp model for
``local``, its own LiteLLM client, the test LM for ``test``), and ``complete(request)`` hands the
request to a free actor slot and waits for its ``Response``. The call's :class:`Scope` travels
with it (the test LM's fault injection keys on the retry attempt). Errors raised in a worker come
back as the same exception objects (lm15's errors hold a ``mappingproxy``, which the workers
pickle as a dict), so retries, failures and exit codes behave as with the local executor; a
worker that dies surfaces as a retryable ``TransportError``. :func:`connect` joins the cluster
at ``$RAY_ADDRESS`` or starts a local one, and says which.
"""

from __future__ import annotations

import copyreg
import logging
import math
import os
import pickle
import queue
import threading
import weakref
from collections import Counter
from types import MappingProxyType
from typing import Any

from dspy.lm15 import Request, Response, TransportError, response_to_events

from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.lm.gate import call_scope, current_scope
from rlm_dsl.runtime.lm.resolve import resolve_lm

NEEDS_RAY = "--executor ray needs Ray: pip install 'rlm-dsl[ray]'"


def _ray() -> Any:
    try:
        import ray  # here: an optional extra, seconds to import
    except ImportError:
        raise SpecError(NEEDS_RAY) from None
    return ray


def connect(workers: int | None = None) -> str:
    """Join the cluster at ``$RAY_ADDRESS`` (or start a local one) and describe it."""
    ray = _ray()
    how = _join(ray)
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return (f"executor: ray ({how} at {ray.get_runtime_context().gcs_address}, "
            f"{nodes} node(s), {int(resources.get('CPU', 0))} CPUs): "
            f"{pool_size(workers)} worker(s) per model")


def _join(ray: Any) -> str:
    """Initialize Ray in this process unless it is already; says how."""
    if ray.is_initialized():
        return "using the running cluster"
    address = os.environ.get("RAY_ADDRESS") or None
    settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        settings["include_dashboard"] = False
    ray.init(address=address, **settings)
    return "joined the cluster" if address else "started a local cluster"


def pool_size(workers: int | None) -> int:
    """``workers`` when given, else one worker per CPU of the cluster."""
    return workers or max(1, int(_ray().cluster_resources().get("CPU", 1)))


class RayEngine:
    """``complete(Request) -> Response`` answered by a pool of :class:`ModelWorker` actors.

    ``per_worker`` is how many calls one actor takes at a time: the model's own limit when it
    has one (1 for the local llama.cpp model), else the run's concurrency spread over the pool.
    ``answered_by`` counts the calls each worker process (by pid) answered, errors included.
    """

    def __init__(self, model_id: str, options: dict[str, Any], *, workers: int | None = None,
                 per_worker: int | None = None, concurrency: int = 8) -> None:
        ray = _ray()
        _join(ray)  # the CLI has said which cluster (connect); only make sure there is one
        self.model_id = model_id
        self.workers = pool_size(workers)
        self.per_worker = per_worker or max(1, math.ceil(concurrency / self.workers))
        actor = ray.remote(ModelWorker).options(
            num_cpus=0, max_concurrency=self.per_worker, max_restarts=1,
            scheduling_strategy="SPREAD", runtime_env=_runtime_env(options),
        )
        self._actors = [actor.remote(model_id, options) for _ in range(self.workers)]
        self._finalizer = weakref.finalize(self, _kill, ray, self._actors)
        self.pids = self._wait_ready(ray)
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(self.per_worker):
            for handle in self._actors:
                self._free.put(handle)
        self.answered_by: Counter[int] = Counter()
        self._lock = threading.Lock()

    @property
    def slots(self) -> int:
        """How many calls the pool runs at once."""
        return self.workers * self.per_worker

    def _wait_ready(self, ray: Any) -> list[int]:
        """Each worker's pid once it has resolved the model; its resolve error, raised here."""
        answers = ray.get([handle.ready.remote() for handle in self._actors])
        for _pid, error in answers:
            if error is not None:
                self.close()
                raise error
        return [pid for pid, _ in answers]

    def complete(self, request: Request) -> Response:
        ray = _ray()
        scope = current_scope()._asdict()
        handle = self._free.get()
        try:
            pid, response, error = ray.get(handle.complete.remote(request, scope))
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()
            raise TransportError(
                f"Ray worker for '{self.model_id}' failed: {first[0] if first else exc!r}"
            ) from None
        finally:
            self._free.put(handle)
        with self._lock:
            self.answered_by[pid] += 1
        if error is not None:
            raise error
        return response

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Stop the pool's actors (also done when the engine is garbage collected)."""
        self._finalizer()


def _kill(ray: Any, actors: list[Any]) -> None:
    """Stop ``actors``; ``ray`` is passed in, as a finalizer may run after the module is gone."""
    if ray.is_initialized():
        for handle in actors:
            ray.kill(handle)


def _runtime_env(options: dict[str, Any]) -> dict[str, Any] | None:
    """The API key variable an ``api_key_env`` option names, for workers on other machines."""
    name = options.get("api_key_env")
    value = os.environ.get(str(name)) if name else None
    return {"env_vars": {str(name): value}} if value else None


class ModelWorker:
    """A Ray actor holding one resolved engine; answers ``(pid, response, error)``."""

    def __init__(self, model_id: str, options: dict[str, Any]) -> None:
        copyreg.pickle(MappingProxyType, _reduce_proxy)  # lm15 errors hold one
        self.engine, self.error = None, None
        try:
            self.engine = resolve_engine(model_id, options)
        except Exception as exc:
            self.error = portable(exc)

    def ready(self) -> tuple[int, BaseException | None]:
        return os.getpid(), self.error

    def complete(self, request: Request, scope: dict[str, Any]
                 ) -> tuple[int, Response | None, BaseException | None]:
        with call_scope(**scope):
            try:
                return os.getpid(), self.engine.complete(request), None
            except Exception as exc:
                return os.getpid(), None, portable(exc)


def resolve_engine(model_id: str, options: dict[str, Any]) -> Any:
    """The inner engine for ``model_id`` in this process."""
    return resolve_lm(model_id, options).engine


def portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it pickles, else a ``RuntimeError`` carrying its type and text."""
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _reduce_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _proxy, (dict(proxy),)


def _proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)
