"""``python -m pidsafe.cli``: the ``pidsafe`` command."""

import sys

from . import main

sys.exit(main())
