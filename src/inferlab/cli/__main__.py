"""``python -m inferlab.cli``: the same as the ``inferlab`` command."""

import sys

from . import main

sys.exit(main())
