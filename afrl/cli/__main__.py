"""`python -m afrl.cli ...`: the same as the `afrl` script."""

import sys

from afrl.cli import main

sys.exit(main())
