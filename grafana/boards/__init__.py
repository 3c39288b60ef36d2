"""The Grafana dashboards as Python: `python -m grafana.boards` writes grafana/dashboards/*.json."""
