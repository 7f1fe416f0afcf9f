"""The files Tenancy ships, as sub-packages (see tenancy.project and pyproject.toml).

Each sub-package is mapped onto a top-level folder of the source tree
(``templates/``, ``policies/``, ``roles/``, ``tests/compliance/``), so a
checkout and a wheel read them through the same ``importlib.resources`` name.
"""
