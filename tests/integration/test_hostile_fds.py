"""Descriptor exhaustion on the edge's public side (docs/edge.md "Limits"):
burrowd takes the whole hard descriptor limit, and slow public clients
cannot hold connections open for ever."""
import contextlib
import resource

import helpers as H


@contextlib.contextmanager
def _soft_nofile(n):
    """Children started inside inherit a soft descriptor limit of n."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_raises_soft_descriptor_limit_to_hard(start_edge):
    with _soft_nofile(256) as hard:
        edge = start_edge()
    _, rec = edge.wait_log("descriptor limit", 5)
    want = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert rec.get("nofile") == want and rec.get("was") == "256", rec
