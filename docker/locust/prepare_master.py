"""Write the settings and workload a plain `locust --master` reads, then print the settings path.

`triton-bundle loadtest` writes these itself; the Kubernetes master runs plain Locust (its workers are
other pods), so it prepares them first:

    locust --master --bundle-config "$(python prepare_master.py SPEC --url triton:8000 --out /tmp/run)"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from triton_bundle.entry import run_entry
from triton_bundle.loadtest.stage import Overrides, build_settings
from triton_bundle.loadtest.workload import workload_for
from triton_bundle.spec import load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="the model's spec.yaml (its eval data is the workload)")
    parser.add_argument("--url", required=True, help="host:port of Triton's HTTP or gRPC endpoint")
    parser.add_argument("--protocol", choices=["http", "grpc"], default=None, help="default: the spec's")
    parser.add_argument("--workers", type=int, default=1, help="worker pods the request cap is split over")
    parser.add_argument("--out", type=Path, required=True, help="directory for the settings and workload")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    overrides = Overrides(url=args.url, protocol=args.protocol, workers=args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = build_settings(spec, overrides, args.out)
    workload_for(spec, seed=settings.seed).save(settings.workload_path)
    print(settings.write(args.out / "locust_settings.json"))
    return 0


if __name__ == "__main__":
    run_entry(main)
