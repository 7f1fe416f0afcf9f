"""The project's tests; a package so ``tests.support`` imports by name (pytest ``pythonpath``)."""
