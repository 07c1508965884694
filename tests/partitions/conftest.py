"""The partition stack: PostgreSQL and Redis in namespace `svc`, the web, the mover and worker nodes
w1 and w2 each in a namespace of its own (tests/partitions/netns.py), so a test cuts one link.

The test process stays in the root namespace and reaches PostgreSQL and Redis through their unix
sockets: this conftest overrides the session's `postgres` and `redis_server` fixtures, so the
shared `db`, `broker` and `make_user` fixtures work here unchanged, on these servers. Django's
default connection is pointed at PostgreSQL's socket before its first use. The test process has
no broker of its own (its REDIS_URL is not reachable from the root namespace): jobs go in through
the web's unix socket (`cluster.submit`, `cluster.api`).
"""

import os

import pytest
from django.db import close_old_connections

from . import netns


@pytest.fixture(scope="session")
def topology():
    if os.environ.get("JQ_TEST_DATABASE") == "sqlite":
        pytest.skip("the partition suite runs on PostgreSQL only")
    netns.require_namespaces()
    made = netns.Topology(nodes=netns.NODES).create()
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture(scope="session")
def postgres(topology):
    from django.core.management import call_command
    from django.db import connections

    server = netns.NsPostgres(topology)
    try:
        server.start()
        connections.close_all()
        # The same dict as settings.DATABASES["default"]: every later connection uses the socket.
        connections["default"].settings_dict.update(
            HOST=str(server.dir), PORT=str(server.port), NAME=server.database, USER=server.user, PASSWORD=""
        )
        call_command("migrate", verbosity=0)
        yield server
    finally:
        connections.close_all()
        server.stop()


@pytest.fixture(scope="session")
def redis_server(topology):
    server = netns.NsRedis(topology)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(request, topology, postgres, redis_server):
    """The processes, started once per module; a module sets CLUSTER_SETTINGS (environment over
    netns.FAST) and CLUSTER_CONCURRENCY (pool processes per worker node, 2) to change them."""
    made = netns.Cluster(
        topology,
        postgres,
        redis_server,
        settings=getattr(request.module, "CLUSTER_SETTINGS", None),
        concurrency=getattr(request.module, "CLUSTER_CONCURRENCY", 2),
    )
    try:
        made.start_all()
        yield made
    finally:
        topology.heal_all()
        made.stop()


@pytest.fixture
def partitions(cluster, broker, make_user):
    """The cluster with clean data, no cut, every process up, and an API token (`.token`)."""
    cluster.heal_all()
    for name in netns.NODES:
        if name not in cluster.processes or not cluster.processes[name].alive():
            cluster.start(name)
    _, cluster.token = make_user("partitions")
    try:
        yield cluster
    finally:
        cluster.heal_all()
        close_old_connections()
