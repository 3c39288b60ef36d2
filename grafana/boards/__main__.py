"""`python -m grafana.boards` writes grafana/dashboards/*.json; `--check` only says which differ."""

import sys

from grafana.boards.build import main

sys.exit(main(sys.argv[1:]))
