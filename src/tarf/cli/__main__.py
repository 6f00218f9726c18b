"""``python -m tarf.cli``: the ``tarf`` command."""

import sys

from tarf.cli import main

sys.exit(main())
