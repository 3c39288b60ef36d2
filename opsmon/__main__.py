"""`python -m opsmon` runs the opsmon command."""

import sys

from opsmon.cli import main

sys.exit(main())
