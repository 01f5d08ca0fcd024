"""``python -m fedsys``: the same entry point as the ``fedsys`` command."""

import sys

from fedsys.cli import main

sys.exit(main())
