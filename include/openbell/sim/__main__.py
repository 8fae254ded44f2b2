"""``python -m openbell.sim``: the same as ``openbell sim``."""

import sys

from openbell.sim.cli import main

raise SystemExit(main(sys.argv[1:]))
