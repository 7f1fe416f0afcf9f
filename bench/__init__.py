"""The benchmarks, run as modules from the repository root (``python -m bench.run_all``).

Being a package lets them import each other (``bench._summary``) and the test
helpers (``tests.support``) by name, with no path edits.
"""
