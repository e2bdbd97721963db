"""Grafana dashboards as code: boards built from the kind catalogue and the alert rules,
exported as provisioning files or pushed to a running Grafana."""
