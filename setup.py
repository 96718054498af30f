"""The one thing pyproject.toml cannot say: the optional compiled row scanner.

`daemon/checks/csv/_rowscan.c` checks unquoted CSV lines several times faster than CPython's regular
expressions (see `daemon/checks/csv/fast.py`). It is optional: where no C compiler is at hand the
build goes on without it, and dropd does the same checks in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("daemon.checks.csv._rowscan", ["daemon/checks/csv/_rowscan.c"], optional=True)])
