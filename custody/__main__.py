"""``python -m custody verify EXPORT --key KEY [--checkpoint FILE] [--json]``."""

import sys

from custody.cli import main

sys.exit(main())
