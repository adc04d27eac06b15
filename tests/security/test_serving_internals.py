"""What passflow.serving relies on inside uvicorn's HttpToolsProtocol, checked so that an
upgrade of uvicorn (pinned in pyproject.toml) cannot silently remove a protection: the hooks it
overrides still exist and are still called, and the upgrade path it closes is still where it
was."""

from __future__ import annotations

import inspect

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from passflow.serving import BoundedHttpProtocol, Limits, server_config

# The parser callbacks and connection hooks BoundedHttpProtocol overrides: each must still be
# one of uvicorn's, with the arguments passflow passes.
HOOKS = {"connection_made": ["self", "transport"], "connection_lost": ["self", "exc"],
         "data_received": ["self", "data"], "send_400_response": ["self", "msg"],
         "on_message_begin": ["self"], "on_url": ["self", "url"],
         "on_header": ["self", "name", "value"], "on_headers_complete": ["self"],
         "on_body": ["self", "body"], "on_message_complete": ["self"],
         "on_response_complete": ["self"]}


def test_every_hook_passflow_overrides_is_still_uvicorns():
    for name, params in HOOKS.items():
        theirs = getattr(HttpToolsProtocol, name)
        assert list(inspect.signature(theirs).parameters) == params, name
        assert name in vars(BoundedHttpProtocol), name


def test_the_fields_passflow_reads_are_still_set():
    """`parser`, `pipeline`, `cycle`, `connections`, `server_state`, `client` and `loop`: set in
    uvicorn's __init__ or connection_made, read by passflow's hooks."""
    source = inspect.getsource(HttpToolsProtocol.__init__) + inspect.getsource(
        HttpToolsProtocol.connection_made)
    for field in ("self.parser", "self.pipeline", "self.cycle", "self.connections",
                  "self.server_state", "self.client", "self.loop"):
        assert f"{field} =" in source or f"{field}:" in source, field


def test_upgrades_are_closed_before_uvicorns_upgrade_path():
    """uvicorn hands an upgraded connection to another protocol from data_received (after the
    parser raises HttpParserUpgrade) without calling connection_lost; passflow refuses in
    on_headers_complete, which the parser calls first, and runs with no WebSocket protocol."""
    assert "handle_websocket_upgrade" in inspect.getsource(HttpToolsProtocol.data_received)
    assert "should_upgrade" in inspect.getsource(BoundedHttpProtocol.on_headers_complete)
    config = server_config(lambda *a: None)
    config.load()
    assert config.ws_protocol_class is None


def test_ipv6_clients_are_counted_by_their_64():
    limits = Limits()
    assert limits.per_client_key("2001:db8:1:2::1") == limits.per_client_key("2001:db8:1:2::ff")
    assert limits.per_client_key("2001:db8:1:3::1") != limits.per_client_key("2001:db8:1:2::1")
    assert limits.per_client_key("::ffff:192.0.2.7") == "192.0.2.7"
