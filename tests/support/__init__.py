"""Helpers shared by the unit and integration tests and the benchmarks.

Imported as ``tests.support.<module>`` with the repository root on the import path:
pytest puts it there (``pythonpath`` in pyproject.toml), the benchmarks run as modules
from the root (``python -m bench.<name>``). One job per module.
"""
