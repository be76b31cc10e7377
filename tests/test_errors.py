"""One exception tree: every exception class of the package descends from DashboardError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import dashboard
from dashboard import errors
from dashboard.errors import DashboardError


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module of the package (``__main__`` modules run
    the program when imported, and define none)."""
    found = []
    for info in pkgutil.walk_packages(dashboard.__path__, "dashboard."):
        if info.name.endswith("__main__") or info.name == "dashboard.web":
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_of_the_package_descends_from_the_root():
    classes = exception_classes()
    assert {c.__name__ for c in classes} >= {
        "ConfigError", "BadRequest", "BrokerError", "FeedLockError", "BrokerDataError",
        "WorkerError", "HandshakeError",
    }
    assert [c.__name__ for c in classes if not issubclass(c, DashboardError)] == []


def test_the_tree_in_the_docstring_names_every_class():
    drawn = errors.__doc__ or ""
    assert all(c.__name__ in drawn for c in exception_classes())
