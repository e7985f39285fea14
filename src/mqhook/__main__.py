"""``python -m mqhook``."""

import sys

from mqhook.cli import main

sys.exit(main())
