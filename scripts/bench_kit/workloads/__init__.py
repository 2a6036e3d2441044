"""The workloads: every module here defines one ``Workload`` subclass. Adding a workload = adding a file."""

from __future__ import annotations

import importlib
import pkgutil

from bench_kit.common import Workload


def discover() -> dict[str, Workload]:
    """name -> workload, in table order."""
    found: list[Workload] = []
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_"):
            continue
        m = importlib.import_module(f"{__name__}.{mod.name}")
        for obj in vars(m).values():
            if (isinstance(obj, type) and issubclass(obj, Workload) and obj.__module__ == m.__name__
                    and obj.name):
                found.append(obj())
    found.sort(key=lambda w: (w.order, w.name))
    return {w.name: w for w in found}
