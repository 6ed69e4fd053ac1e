"""One real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3) for the
whole test session, and a driver connected to it. Only the processes of this cluster's
own temp folder are stopped at the end."""

from __future__ import annotations

import os

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the test cluster listens on loopback only


@pytest.fixture(scope="session")
def ray_cluster():
    pytest.importorskip("ray")
    from biasamp.engines.cluster import LocalCluster

    cluster = LocalCluster(nodes=2, cpus_per_node=1, object_store_memory=100_000_000)
    cluster.start()
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()


@pytest.fixture(scope="session")
def ray_engine(ray_cluster):
    """A RayEngine joined to the loopback cluster (both nodes alive when handed out)."""
    from biasamp.engines.ray_engine import RayEngine

    engine = RayEngine(ray_cluster.address, node_ip_address=ray_cluster.head_ip, max_retries=4).connect()
    ray_cluster.wait_for_nodes(2)
    yield engine


@pytest.fixture
def two_nodes(ray_cluster, ray_engine):
    """The engine, with the worker node brought back first if an earlier test killed it."""
    if not ray_cluster.node_pids(ray_cluster.ips[1]):  # killed by an earlier test: start it again
        import time

        import ray

        ip = ray_cluster.ips[1]
        before = {n["NodeID"] for n in ray.nodes()}
        ray_cluster.add_node(ip)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and not any(
                n.get("Alive") and n["NodeManagerAddress"] == ip and n["NodeID"] not in before for n in ray.nodes()):
            time.sleep(0.2)
    return ray_engine
