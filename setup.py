"""The one thing pyproject.toml cannot say: the optional compiled row scanner.

`daemon/checks/csv/_rowscan.c` checks the CSV lines opencsv reads as they look (no backslash, no
lone CR, quotes only at field edges) for `daemon/checks/csv/check.py`, with the GIL released, so
that a large file is checked on two threads.
It is optional: where no C compiler is at hand the build goes on without it, and the reference
reader (`daemon/base/opencsv.py`) checks those lines in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("daemon.checks.csv._rowscan", ["daemon/checks/csv/_rowscan.c"], optional=True)
    ]
)
