"""
pytest glue: trial's C{mktemp()} makes paths relative to the working
directory, so the whole run works inside a throwaway directory instead of
the checkout.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratchDirectory(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("trial"))
    yield
    os.chdir(before)
