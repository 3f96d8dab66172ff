"""Operate a served model: Prometheus alerting rules, a Grafana dashboard and autoscaling metrics, all
generated from the spec (thresholds from `loadtest.slo`), plus the authenticating proxy's helpers."""
