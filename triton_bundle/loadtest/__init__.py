"""Load testing with Locust and a release gate on the spec's SLOs.

Entry points: `stage.loadtest_stage` (one run), `capacity.capacity_stage` (highest load within SLOs),
`compare.compare_stage` (Locust vs perf_analyzer); `locustfile.py` is what Locust runs. The parent
process never imports Locust (it monkey-patches gevent): Locust always runs as a subprocess.
"""
