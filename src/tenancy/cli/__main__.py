"""``python -m tenancy.cli``: the console script without the installed entry point."""

import sys

from tenancy.cli import main

sys.exit(main())
