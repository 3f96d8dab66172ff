"""The locustfile `triton-bundle loadtest` runs; plain Locust runs it too:

    locust -f $(python -c "import triton_bundle.loadtest.locustfile as m; print(m.__file__)") \\
        --headless --bundle-config artifacts/<name>/loadtest/locust_settings.json

The settings file (written by the runner) names the server, the model, the workload, the load shape and
the request cap. Workers on other hosts: the same command with `--worker --master-host <master>`.
"""

from __future__ import annotations

# gRPC must cooperate with gevent before any channel exists; without this, throughput under Locust
# collapsed (284 vs 1751 req/s measured). Harmless for HTTP runs.
from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import LoadTestShape  # noqa: E402 - after init_gevent on purpose

from triton_bundle.loadtest import locust_process  # noqa: E402
from triton_bundle.loadtest.generation_users import (  # noqa: E402
    GenerationGrpcUser,
    GenerationHttpUser,
)
from triton_bundle.loadtest.shapes import ShapePlan, plan_for  # noqa: E402
from triton_bundle.loadtest.users import TritonGrpcUser, TritonHttpUser  # noqa: E402


class TritonHttp(TritonHttpUser):
    """A client over HTTP (picked by the shape when settings say protocol: http)."""


class TritonGrpc(TritonGrpcUser):
    """A client over gRPC (picked by the shape when settings say protocol: grpc)."""


class GenerateHttp(GenerationHttpUser):
    """A streaming generation client over HTTP SSE (text-generation, protocol: http)."""


class GenerateGrpc(GenerationGrpcUser):
    """A streaming generation client over gRPC (text-generation, protocol: grpc)."""


class BundleShape(LoadTestShape):
    """Delegates to the schedule the settings name and runs only the user class of their protocol."""

    # The shape reads duration and users from the settings; --run-time stays a hard stop.
    use_common_options = True
    _plan: ShapePlan | None = None

    def tick(self):
        assert self.runner is not None
        settings = locust_process.process_state(self.runner.environment).settings
        if self._plan is None:
            self._plan = plan_for(settings.shape)
        step = self._plan.tick(self.get_run_time())
        if step is None:
            return None
        grpc = settings.endpoint.protocol == "grpc"
        if settings.generation is not None:
            user_class = GenerateGrpc if grpc else GenerateHttp
        else:
            user_class = TritonGrpc if grpc else TritonHttp
        return step.users, step.spawn_rate, [user_class]
