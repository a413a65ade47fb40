"""The client against real servers on loopback: spreading, failover, cache, errors."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from support.estimator import ServerProcess

from gen5nas.errors import SpecError
from gen5nas.estimator.client import EstimatorClient, _retryable, parse_servers
from gen5nas.estimator.errors import EstimatorRequestError, EstimatorUnavailable
from gen5nas.estimator.server import start_server
from gen5nas.estimator.synthetic import convnet


def models(n: int, resolution: int = 32) -> list[bytes]:
    # Different weights -> different bytes -> different cache keys (same cost per model).
    return [convnet(resolution=resolution, channels=(8, 16), seed=i) for i in range(n)]


@pytest.fixture()
def two_servers():
    a, b = start_server(0), start_server([0, 0])
    yield a, b
    a.stop(grace=0)
    b.stop(grace=0)


def test_requests_spread_over_every_server(two_servers) -> None:
    a, b = two_servers
    servers = [{"host": "127.0.0.1", "ports": a.ports}, {"host": "127.0.0.1", "ports": b.ports}]
    with EstimatorClient(servers, profile="edge-npu") as client:
        assert len(client.endpoints) == 3
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(client.estimate, models(24)))
        per_endpoint = client.served_by_endpoint()
    assert all(r.latency_ms and r.latency_ms > 0 for r in results)
    assert a.servicer.stats["estimate"] > 0 and b.servicer.stats["estimate"] > 0
    assert a.servicer.stats["estimate"] + b.servicer.stats["estimate"] == 24
    assert all(n > 0 for n in per_endpoint.values()), per_endpoint


def test_killing_a_server_mid_run_loses_no_request() -> None:
    survivor = start_server(0)
    with ServerProcess(1) as victim:
        victim_target = f"127.0.0.1:{victim.ports[0]}"
        with EstimatorClient(victim_target, profile="rcar-gen5-npu") as warm:
            warm.estimate(convnet(resolution=16))  # first request pays the imports: do it now
        servers = [
            {"host": "127.0.0.1", "ports": victim.ports},
            {"host": "127.0.0.1", "ports": survivor.ports},
        ]
        client = EstimatorClient(servers, profile="rcar-gen5-npu", retries=3, timeout_s=30)
        inputs = models(60, resolution=48)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client.estimate, m) for m in inputs[:30]]

            # Kill the victim once it has answered one (the in-process survivor may well answer
            # the whole first half first); the second half of the run is asked after the kill,
            # so some of it surely meets the dead server.
            def victim_served() -> int:
                return client.served_by_endpoint()[victim_target]

            while victim_served() < 1 and not all(f.done() for f in futures):
                time.sleep(0.001)
            assert victim_served() >= 1, "the victim answered none of the first half"
            victim.proc.kill()
            victim.proc.wait(timeout=30)
            futures += [pool.submit(client.estimate, m) for m in inputs[30:]]
            results = [f.result(timeout=120) for f in futures]
        served = client.served_by_endpoint()
        retries = client.stats["retries"]
        client.close()
    survivor.stop(grace=0)
    assert retries >= 1  # requests that met the dead server went to the other one
    assert len(results) == 60 and all(r.latency_ms and r.latency_ms > 0 for r in results)
    assert served[victim_target] >= 1 and sum(served.values()) == 60
    assert served[f"127.0.0.1:{survivor.ports[0]}"] > 0
    # Killed before the end: the survivor answered everything asked after the kill.
    assert {r.endpoint for r in results} == set(served)


def test_repeated_requests_hit_the_cache(two_servers) -> None:
    a, _ = two_servers
    model = models(1)[0]
    with EstimatorClient([{"host": "127.0.0.1", "ports": a.ports}], profile="edge-npu") as client:
        first = client.estimate(model)
        second = client.estimate(model)
        assert second == first
        assert client.stats["cache_hits"] == 1 and client.stats["rpcs"] == 1
        # Concurrent identical questions share one RPC.
        other = models(2)[1]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(client.estimate, [other] * 8))
        assert len({a.latency_ms for a in answers}) == 1
        assert client.stats["rpcs"] == 2 and a.servicer.stats["estimate"] == 2
    # The overrides are part of the key: another hw_config is another question.
    with EstimatorClient(
        [{"host": "127.0.0.1", "ports": a.ports}], profile="edge-npu", hw_config={"clock_ghz": 2}
    ) as fast:
        assert fast.estimate(model).latency_ms < first.latency_ms  # type: ignore[operator]
    assert a.servicer.stats["estimate"] == 3


def test_dns_name_with_round_robin(two_servers) -> None:
    _, b = two_servers
    # One name -> a dns:/// target balanced by gRPC's round_robin (a headless Service's form).
    with EstimatorClient(f"localhost:{b.ports[0]}", profile="edge-npu") as client:
        assert client.endpoints == [f"dns:///localhost:{b.ports[0]}"]
        assert client.estimate(models(1)[0]).latency_ms > 0  # type: ignore[operator]


def test_refused_requests_are_not_retried(two_servers) -> None:
    a, _ = two_servers
    with EstimatorClient([{"host": "127.0.0.1", "ports": a.ports}], profile="npu-x") as client:
        with pytest.raises(EstimatorRequestError, match="unknown hardware profile") as err:
            client.estimate(models(1)[0])
        assert err.value.code == "NOT_FOUND" and client.stats["rpcs"] == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_endpoints_down_raises_unavailable() -> None:
    port = _closed_port()
    client = EstimatorClient(f"127.0.0.1:{port}", profile="edge-npu", retries=2, timeout_s=5)
    with pytest.raises(EstimatorUnavailable, match=f"127.0.0.1:{port}"):
        client.estimate(models(1)[0])
    assert client.stats["rpcs"] == 3
    client.close()


def test_parse_servers() -> None:
    # A DNS name (localhost too) is one round-robin endpoint per port; an IP literal is plain.
    assert parse_servers([{"host": "est.ns.svc", "ports": [1, 2]}, {"host": "10.0.0.1"}]) == [
        ("dns:///est.ns.svc:1", True), ("dns:///est.ns.svc:2", True), ("10.0.0.1:50051", False)
    ]  # fmt: skip
    assert parse_servers([{"host": "::1", "port": 3}, "localhost:4"]) == [
        ("[::1]:3", False), ("dns:///localhost:4", True)
    ]  # fmt: skip
    assert parse_servers("10.0.0.1:5,10.0.0.2:6") == [("10.0.0.1:5", False), ("10.0.0.2:6", False)]
    assert parse_servers("est.ns.svc") == [("dns:///est.ns.svc:50051", True)]
    assert parse_servers("dns:///est:7") == [("dns:///est:7", True)]
    assert parse_servers("::1") == [("[::1]:50051", False)]
    # Multi-address targets are kept whole (not split at their commas) and balanced.
    assert parse_servers("ipv4:10.0.0.1:5,10.0.0.2:6") == [("ipv4:10.0.0.1:5,10.0.0.2:6", True)]
    assert parse_servers(["ipv6:[::1]:5,[::2]:6"]) == [("ipv6:[::1]:5,[::2]:6", True)]
    with pytest.raises(SpecError, match=r"servers\[0\].ports"):
        parse_servers([{"host": "a", "ports": [70000]}])
    with pytest.raises(SpecError, match="no host"):
        parse_servers([{"ports": [1]}])
    with pytest.raises(SpecError, match=r"'10.0.0.2' .* not an IPv4 address with a port"):
        parse_servers("ipv4:10.0.0.1:5,10.0.0.2")
    with pytest.raises(SpecError, match=r"servers\[1\].*IPv6"):
        parse_servers(["a:1", "ipv6:::1:5"])


def test_multi_address_target_spreads_over_every_server(two_servers) -> None:
    a, b = two_servers
    target = f"ipv4:127.0.0.1:{a.ports[0]},127.0.0.1:{b.ports[0]}"
    with EstimatorClient(target, profile="edge-npu") as client:
        assert client.endpoints == [target]
        # Round-robin uses a subchannel once it is connected: ask until both have answered.
        for i in range(200):
            if a.servicer.stats["estimate"] and b.servicer.stats["estimate"]:
                break
            assert client.estimate(convnet(resolution=16, channels=(8,), seed=i)).latency_ms
    assert a.servicer.stats["estimate"] > 0 and b.servicer.stats["estimate"] > 0


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "retry"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", True),
        (grpc.StatusCode.UNKNOWN, "Stream removed", True),  # the server died mid-call
        (grpc.StatusCode.CANCELLED, "Received RST_STREAM with error code 8", True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!", True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "model is 300 MiB, over this server's limit", False),
        (grpc.StatusCode.UNKNOWN, "Exception calling application", False),
        (grpc.StatusCode.CANCELLED, "Cancelled", False),
        (grpc.StatusCode.INVALID_ARGUMENT, "not an ONNX model", False),
    ],
)
def test_retryable(code: grpc.StatusCode, details: str, retry: bool) -> None:
    assert _retryable(_RpcError(code, details)) is retry


def test_estimate_arch_builds_the_subnet_on_the_server(two_servers) -> None:
    import random

    pytest.importorskip("torch")
    from gen5nas.spec import load_space

    a, _ = two_servers
    space = load_space("mobilenetv2_tiny")
    small, large = space.min(), space.max()
    with EstimatorClient([{"host": "127.0.0.1", "ports": a.ports}], profile="edge-npu") as client:
        lo, hi = (
            client.estimate_arch("mobilenetv2_tiny", small),
            client.estimate_arch("mobilenetv2_tiny", large),
        )
        assert 0 < lo.total_macs < hi.total_macs and lo.latency_ms < hi.latency_ms  # type: ignore[operator]
        assert client.estimate_arch("mobilenetv2_tiny", small) == lo  # cached
        assert client.stats["rpcs"] == 2
        # An arch outside the space is refused with the offending dimension named.
        bad = space.sample(random.Random(0)).model_copy(update={"first_num_out_channels": 9})
        with pytest.raises(EstimatorRequestError, match="first_num_out_channels") as err:
            client.estimate_arch("mobilenetv2_tiny", bad)
        assert err.value.code == "INVALID_ARGUMENT"


def test_concurrent_arch_requests_build_safely(two_servers) -> None:
    # torch's ONNX exporter is process-global: the server must not run two builds at once.
    import random

    pytest.importorskip("torch")
    from gen5nas.spec import load_space

    a, _ = two_servers
    space = load_space("mobilenetv2_tiny")
    rng = random.Random(5)
    archs = {arch.key(): arch for arch in (space.sample(rng) for _ in range(12))}
    servers = [{"host": "127.0.0.1", "ports": a.ports}]
    with EstimatorClient(servers, profile="edge-npu") as client, ThreadPoolExecutor(4) as pool:
        todo = list(archs.values())[:6]
        results = list(pool.map(lambda x: client.estimate_arch("mobilenetv2_tiny", x), todo))
    assert all(r.latency_ms and r.total_macs > 0 for r in results)
    assert a.servicer.stats["error:INTERNAL"] == 0
