"""``python -m pbtune.cli``."""

import sys

from pbtune.cli import main

sys.exit(main())
