"""A test site's whole life: lock, copy, sweep of leftovers, yield, destroy, sweep, checks.

The integration tests that bring a copy of the project up (``tests/support/sitecopy.py``)
share this frame, so each says only what its site holds and how it is destroyed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.libvirt_cleanup import site_objects, sweep_site
from tests.support.locks import site_lock
from tests.support.sitecopy import SiteCopy, make_site_copy, new_workdir


@contextmanager
def site_copy_lifetime(
    libvirt_uri: str,
    site: str,
    tenants: dict[str, Any],
    names: Sequence[str],
    *,
    prepare: Callable[[SiteCopy], None] | None = None,
    destroy_args: Sequence[str] = (),
) -> Iterator[SiteCopy]:
    """The copy of ``site`` with ``tenants`` written (``names``: every tenant it may hold).

    ``prepare`` runs once the copy exists (waivers, a git repository); at the end
    ``tenancy destroy --site <site> <destroy_args>`` must succeed and leave nothing.
    """
    main = Path(os.environ["TENANCY_ROOT"])
    with site_lock(site):
        workdir = new_workdir(site)
        copy = make_site_copy(main, workdir / "project", site, tenants)
        if any(site_objects(libvirt_uri, copy, list(names)).values()):
            sweep_site(libvirt_uri, copy, list(names))
        if prepare is not None:
            prepare(copy)
        try:
            yield copy
        finally:
            try:
                destroyed = copy.tenancy("destroy", "--site", site, *destroy_args, timeout=1800)
            finally:
                left = sweep_site(libvirt_uri, copy, list(names))
                shutil.rmtree(workdir, ignore_errors=True)
            assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-2000:]
            assert not any(left.values()), f"destroy left objects behind: {left}"
