"""Run the ``Examples:`` blocks of every library module as doctests."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import aimc
import device_models


def _modules() -> list[str]:
    names = []
    for pkg in (aimc, device_models):
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_functional_modules_have_examples():
    for name in ("aimc.functional", "device_models.functional", "device_models.converters"):
        finder = doctest.DocTestFinder()
        tests = [t for t in finder.find(importlib.import_module(name)) if t.examples]
        assert len(tests) >= 3, name
