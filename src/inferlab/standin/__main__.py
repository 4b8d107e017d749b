"""``python -m inferlab.standin [options]``: run a stand-in server until SIGTERM/SIGINT (or its
injected death). ``--help`` lists the options."""

import sys

from .config import parse_args
from .server import serve

if __name__ == "__main__":
    sys.exit(serve(*parse_args()))
