"""`python -m backup_jobs` runs opsmon-backup."""

import sys

from backup_jobs.cli import main

sys.exit(main())
