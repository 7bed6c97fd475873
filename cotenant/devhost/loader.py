"""Load a Python v2 ``function_app.py`` and index its functions by trigger, as the worker does."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.functions.decorators.function_app import FunctionRegister


class AppLoadError(RuntimeError):
    """The function app could not be loaded or indexed."""


@dataclass(frozen=True)
class Function:
    """One function of the app: its name, trigger binding, other bindings and user code."""

    name: str
    trigger: dict[str, Any]
    bindings: tuple[dict[str, Any], ...]
    code: Any

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_param(self) -> str:
        return str(self.trigger["name"])

    def binding_of(self, kind: str) -> dict[str, Any] | None:
        return next((b for b in self.bindings if b["type"] == kind), None)


@dataclass
class FunctionIndex:
    """The app's functions grouped by what triggers them."""

    app_path: Path
    functions: dict[str, Function] = field(default_factory=dict)

    def by_trigger(self, kind: str) -> list[Function]:
        return [f for f in self.functions.values() if f.trigger_type == kind]

    def get(self, name: str, kind: str) -> Function | None:
        found = self.functions.get(name)
        return found if found is not None and found.trigger_type == kind else None

    @property
    def orchestrators(self) -> list[Function]:
        return self.by_trigger("orchestrationTrigger")

    @property
    def activities(self) -> list[Function]:
        return self.by_trigger("activityTrigger")


def _find_app(module: Any, path: Path) -> FunctionRegister:
    apps = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(f"{path} must define exactly one FunctionApp (found {len(apps)})")
    return apps[0]


def _import(path: Path) -> Any:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"_devhost_app_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    root = str(path.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise AppLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_app(app_path: str | Path) -> FunctionIndex:
    """Import ``app_path`` once per process and index its functions.

    ``get_functions()`` may only be called once per app object, so the index is cached on it.
    """
    path = Path(app_path).resolve()
    if not path.is_file():
        raise AppLoadError(f"no function app at {path}")
    app = _find_app(_import(path), path)
    cached = getattr(app, "_devhost_index", None)
    if isinstance(cached, FunctionIndex):
        return cached
    index = FunctionIndex(path)
    for fn in app.get_functions():
        bindings = tuple(json.loads(raw) for raw in fn.get_raw_bindings())
        trigger = next((b for b in bindings if b["type"].lower().endswith("trigger")), None)
        if trigger is None:
            raise AppLoadError(f"function {fn.get_function_name()} has no trigger")
        name = fn.get_function_name()
        index.functions[name] = Function(name, trigger, bindings, fn.get_user_function())
    app._devhost_index = index  # type: ignore[attr-defined]
    return index
