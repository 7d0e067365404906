"""ProbePolicy's refusal of the exporter's own address, for every form of --web.listen-address."""

from __future__ import annotations

import pytest

from exporter.app.probe import ProbePolicy


@pytest.mark.parametrize("listen", [":9797", "[::]:9797", "0.0.0.0:9797", "127.0.0.1:9797"])
@pytest.mark.parametrize("target", ["ws://127.0.0.1:9797/introspect", "ws://localhost:9797/introspect"])
def test_own_address_is_refused(listen: str, target: str) -> None:
    policy = ProbePolicy(enabled=True, allow=[".*"], listen=listen)
    assert policy.refusal(target) == "target is this exporter"


@pytest.mark.parametrize("listen", [":9797", "127.0.0.1:9797"])
def test_other_port_or_host_is_not_self(listen: str) -> None:
    policy = ProbePolicy(enabled=True, allow=[".*"], listen=listen)
    assert policy.refusal("ws://127.0.0.1:4001/introspect") is None
    assert policy.refusal("ws://192.0.2.7:4001/introspect") is None
