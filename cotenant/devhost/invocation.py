"""The ``context`` argument the Python worker passes to functions that declare one."""

from __future__ import annotations

import inspect
import threading
import uuid
from typing import Any

from azure.functions import _abc


class _Trace(_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _NoRetry(_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(_abc.Context):
    """One invocation: id, function name and directory, trace and retry contexts."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._id = str(uuid.uuid4())
        self._name = function_name
        self._directory = function_directory
        self._trace = _Trace()
        self._retry = _NoRetry()
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> _abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> _abc.RetryContext:
        return self._retry


def wants_context(code: Any, bound: set[str]) -> bool:
    """Whether the function declares a ``context`` parameter that no binding fills."""
    try:
        params = inspect.signature(code).parameters
    except (TypeError, ValueError):
        return False
    return "context" in params and "context" not in bound
