"""Switchboard driven by the official Python Socket.IO client (python-socketio).

SPEC §3: handshakes and refusals, subscribe/publish/acks, delivery `(data, meta)`, echo,
presence, rights, validation.
"""

from __future__ import annotations

import time

import pytest
import requests
import socketio

from conftest import NS, TRANSPORTS, unique


def error_code(ack) -> str:
    assert isinstance(ack, dict) and ack.get("ok") is False, f"expected an error ack, got {ack!r}"
    err = ack.get("error")
    assert isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("message"), str), ack
    return err["code"]


def refusal(client, transport, **kw) -> str:
    """Connects expecting a refusal; returns the connect_error's message (the SPEC code)."""
    # After a refused namespace python-socketio closes the Engine.IO connection and joins
    # its reader; over polling its CLOSE packet can be lost (a client-side race in
    # python-engineio's write loop), so the join would wait for the server's next ping
    # (25 s). Not joining the reader keeps refusals fast and changes nothing else.
    eio_disconnect = client.sio.eio.disconnect
    client.sio.eio.disconnect = lambda abort=False, reason=None: eio_disconnect(abort=True, reason=reason)
    with pytest.raises(socketio.exceptions.ConnectionError) as ei:
        client.connect(transport, **kw)
    # python-socketio raises "One or more namespaces failed to connect: /demo" and hands
    # the CONNECT_ERROR payload to the namespace's connect_error handler.
    assert NS in str(ei.value) or client.ns in str(ei.value), str(ei.value)
    assert client.connect_errors, "no connect_error payload"
    data = client.connect_errors[-1]
    assert isinstance(data, dict) and "message" in data, data
    return data["message"]


# --- handshakes -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect_with_token_in_auth(server, clients, transport):
    c = clients()
    c.connect(transport, auth={"token": server.token()})
    assert c.sio.transport() == transport
    session = c.session()
    assert set(session) == {"id", "recovered"}
    assert isinstance(session["id"], str) and session["id"]
    assert session["recovered"] is False


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect_with_printed_client_token(server, clients, transport):
    c = clients()
    c.connect(transport, auth={"token": server.client_token})
    assert c.session()["recovered"] is False


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect_with_authorization_header(server, clients, transport):
    sub = unique("hdr")
    c = clients()
    c.connect(transport, headers={"Authorization": f"Bearer {server.token(sub=sub)}"})
    c.session()
    room = unique("room")
    assert c.call("subscribe", {"room": room}) == {"ok": True}
    a = c.call("publish", {"room": room, "event": "hello", "data": 1, "echo": True})
    assert a["ok"] is True, a
    data, meta = c.event("hello")
    assert data == 1 and meta["from"] == sub


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_missing_credentials(clients, transport):
    assert refusal(clients(), transport) == "missing_credentials"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_tenant(server, clients, transport):
    c = clients("/nope")
    assert refusal(c, transport, auth={"token": server.token(aud="nope")}) == "unknown_tenant"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("ns", ["/Demo", "/de_mo", "/-demo", "/" + "a" * 64])
def test_invalid_tenant_names(server, clients, transport, ns):
    assert refusal(clients(ns), transport, auth={"token": server.token()}) == "unknown_tenant"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_token(server, clients, transport):
    assert refusal(clients(), transport, auth={"token": "garbage"}) == "invalid_token"
    wrong = server.token(key="wrong-secret-wrong-secret-wrong!")
    assert refusal(clients(), transport, auth={"token": wrong}) == "invalid_token"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_expired(server, clients, transport):
    token = server.token(exp=int(time.time()) - 10)
    assert refusal(clients(), transport, auth={"token": token}) == "token_expired"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_query_token_disabled(server, clients, transport):
    assert refusal(clients(), transport, query=f"?token={server.token()}") == "query_token_disabled"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ticket(server, clients, transport):
    sub = unique("tix")
    r = requests.post(f"{server.origin}/v1/tickets", headers={"Authorization": f"Bearer {server.token(sub=sub)}"}, timeout=5)
    assert r.status_code == 201, r.text
    ticket = r.json()["ticket"]
    c = clients()
    c.connect(transport, auth={"ticket": ticket})
    c.session()
    assert refusal(clients(), transport, auth={"ticket": ticket}) == "ticket_invalid"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_right_after_connect_is_answered(server, clients, transport):
    """`connect()` returns once the namespace is joined; an event sent at once must not be
    lost (the server must be ready for events when it acknowledges the CONNECT)."""
    lost = []
    for i in range(20):
        c = clients()
        c.connect(transport, auth={"token": server.token()})
        try:
            a = c.call("subscribe", {"room": unique("room")}, timeout=2)
            if a != {"ok": True}:
                lost.append((i, a))
        except socketio.exceptions.TimeoutError:
            lost.append((i, "no ack"))
        c.close()
    assert lost == [], f"{len(lost)} of 20 first events were not answered: {lost}"


# --- messaging ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_publish_ack_and_delivery(connected, transport):
    pub = connected(transport)
    sub = connected(transport)
    room = unique("room")
    assert sub.call("subscribe", {"room": room}) == {"ok": True}
    before = int(time.time() * 1000)
    a = pub.call("publish", {"room": room, "event": "chat.message", "data": {"text": "hi", "n": [1, 2]}})
    after = int(time.time() * 1000)
    assert a["ok"] is True, a
    assert isinstance(a["id"], str) and a["id"]
    assert isinstance(a["offset"], str) and a["offset"]

    args = sub.event("chat.message")
    assert len(args) == 2, args
    data, meta = args
    assert data == {"text": "hi", "n": [1, 2]}
    assert set(meta) == {"room", "id", "offset", "from", "ts"}
    assert meta["room"] == room
    assert meta["id"] == a["id"]
    assert meta["offset"] == a["offset"]
    assert meta["from"] == pub.sub
    assert isinstance(meta["ts"], int) and before - 5000 <= meta["ts"] <= after + 5000


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_offsets_grow_and_order_is_kept(connected, transport):
    pub = connected(transport)
    sub = connected(transport)
    room = unique("room")
    assert sub.call("subscribe", {"room": room}) == {"ok": True}
    acks = [pub.call("publish", {"room": room, "event": "seq", "data": i}) for i in range(20)]
    assert all(a["ok"] for a in acks), acks
    offsets = [int(a["offset"]) for a in acks]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
    sub.wait_for(lambda e, a: e == "seq" and a[0] == 19, "the last message")
    got = sub.received("seq")
    assert [d for d, _ in got] == list(range(20))
    assert [m["offset"] for _, m in got] == [a["offset"] for a in acks]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unsubscribe(connected, transport):
    c = connected(transport)
    room = unique("room")
    assert c.call("subscribe", {"room": room}) == {"ok": True}
    assert c.call("unsubscribe", {"room": room}) == {"ok": True}
    assert c.call("unsubscribe", {"room": room}) == {"ok": True}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_publisher_excluded_unless_echo(connected, transport):
    pub = connected(transport)
    other = connected(transport)
    room = unique("room")
    for c in (pub, other):
        assert c.call("subscribe", {"room": room}) == {"ok": True}
    assert pub.call("publish", {"room": room, "event": "first", "data": "no-echo"})["ok"] is True
    other.event("first")
    # A marker with echo from the same publisher: delivery keeps publish order, so the
    # first message would have arrived before it.
    assert pub.call("publish", {"room": room, "event": "marker", "data": "echo", "echo": True})["ok"] is True
    data, meta = pub.event("marker")
    assert data == "echo" and meta["from"] == pub.sub
    assert pub.received("first") == [], "the publisher got its own message without echo"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_event_is_invalid_event(connected, transport):
    c = connected(transport)
    assert error_code(c.call("no-such-event", {"room": "x"})) == "invalid_event"


# --- presence -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_presence_query_and_events(connected, transport):
    room = unique("room")
    watcher = connected(transport)
    assert watcher.call("subscribe", {"room": room}) == {"ok": True}

    bob = unique("bob")
    b1 = connected(transport, sub=bob, meta={"name": "Bob"})
    assert b1.call("subscribe", {"room": room}) == {"ok": True}
    (join,) = watcher.event("presence:join", where=lambda p: p["sub"] == bob)
    assert join == {"room": room, "sub": bob, "meta": {"name": "Bob"}}

    b2 = connected(transport, sub=bob, meta={"name": "Bob"})
    assert b2.call("subscribe", {"room": room}) == {"ok": True}
    a = watcher.call("presence", {"room": room})
    assert a["ok"] is True
    members = {m["sub"]: m for m in a["members"]}
    assert set(members) == {watcher.sub, bob}
    assert members[bob] == {"sub": bob, "meta": {"name": "Bob"}, "connections": 2}

    # Carol's join proves Bob's second connection sent none before it.
    carol = connected(transport)
    assert carol.call("subscribe", {"room": room}) == {"ok": True}
    watcher.event("presence:join", where=lambda p: p["sub"] == carol.sub)
    assert len([p for (p,) in watcher.received("presence:join") if p["sub"] == bob]) == 1

    # Bob's first connection leaves: no leave yet (Carol's leave proves it), then his last.
    assert b1.call("unsubscribe", {"room": room}) == {"ok": True}
    assert carol.call("unsubscribe", {"room": room}) == {"ok": True}
    watcher.event("presence:leave", where=lambda p: p["sub"] == carol.sub)
    assert [p for (p,) in watcher.received("presence:leave") if p["sub"] == bob] == []
    b2.close()
    (leave,) = watcher.event("presence:leave", where=lambda p: p["sub"] == bob)
    assert leave == {"room": room, "sub": bob, "meta": {"name": "Bob"}}


# --- rights and validation ------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forbidden(connected, transport):
    c = connected(transport, caps={"chat:*": ["subscribe"]})
    assert c.call("subscribe", {"room": "chat:1"}) == {"ok": True}
    assert error_code(c.call("subscribe", {"room": "other"})) == "forbidden"
    assert error_code(c.call("publish", {"room": "chat:1", "event": "e", "data": 1})) == "forbidden"
    assert error_code(c.call("presence", {"room": "chat:1"})) == "forbidden"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_default_caps_forbid_everything(connected, transport):
    c = connected(transport, caps=None)
    room = unique("room")
    assert error_code(c.call("subscribe", {"room": room})) == "forbidden"
    assert error_code(c.call("publish", {"room": room, "event": "e", "data": 1})) == "forbidden"
    assert error_code(c.call("presence", {"room": room})) == "forbidden"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "payload",
    [
        {"room": ""},
        {"room": "r" * 201},
        {"room": "a b"},
        {"room": "café"},
        {"room": 42},
        {},
        "room",
        None,
        [1],
    ],
    ids=["empty", "201-bytes", "space", "non-ascii", "number", "missing", "string-payload", "null-payload", "list-payload"],
)
def test_invalid_room(connected, transport, payload):
    c = connected(transport)
    for event in ("subscribe", "unsubscribe", "presence"):
        assert error_code(c.call(event, payload)) == "invalid_room", event
    body = dict(payload, event="e", data=1) if isinstance(payload, dict) else payload
    assert error_code(c.call("publish", body)) == "invalid_room"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_room_of_200_bytes_is_valid(connected, transport):
    c = connected(transport)
    assert c.call("subscribe", {"room": "r" * 200}) == {"ok": True}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("event", ["connect", "disconnect", "session", "x" * 129, "", None])
def test_invalid_event(connected, transport, event):
    c = connected(transport)
    body = {"room": unique("room"), "data": 1}
    if event is not None:
        body["event"] = event
    assert error_code(c.call("publish", body)) == "invalid_event"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_payload_too_large(connected, transport):
    c = connected(transport)
    room = unique("room")
    assert c.call("subscribe", {"room": room}) == {"ok": True}
    # 65534 characters + 2 quotes = exactly 65536 bytes of JSON: accepted.
    a = c.call("publish", {"room": room, "event": "big", "data": "x" * 65534, "echo": True})
    assert a["ok"] is True, a
    data, _ = c.event("big")
    assert data == "x" * 65534
    # One byte more: refused.
    assert error_code(c.call("publish", {"room": room, "event": "big2", "data": "x" * 65535, "echo": True})) == "payload_too_large"
    assert error_code(c.call("publish", {"room": room, "event": "big2", "data": {"t": "y" * 70000}})) == "payload_too_large"
    assert c.call("publish", {"room": room, "event": "marker", "data": 1, "echo": True})["ok"] is True
    c.event("marker")
    assert c.received("big2") == []
