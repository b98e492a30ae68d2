"""``python -m hardstop``: see the command-line help in hardstop._cli."""

import sys

from hardstop._cli import main

sys.exit(main())
