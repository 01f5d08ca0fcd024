"""``python -m fedsys.cli``: the ``fedsys`` command (how local launchers start children)."""

import sys

from fedsys.cli import main

sys.exit(main())
