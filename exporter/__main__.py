"""`python -m exporter` runs opsmon-exporter."""

import sys

from exporter.cli import main

sys.exit(main())
