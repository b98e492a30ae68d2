"""``python -m hardstop.bench``, the same as ``python -m hardstop bench``."""

import sys

from hardstop.bench import main

sys.exit(main())
