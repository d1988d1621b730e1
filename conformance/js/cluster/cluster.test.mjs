// Three edges, one admin, a private Redis and NATS: the service behaves as one.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Cluster } from "../lib/cluster.mjs";
import { ack, collect, connected, once, unique } from "../lib/server.mjs";

let c;
let t;
before(async () => {
  c = await new Cluster().edges(3).start();
  t = await c.tenant();
});
after(async () => {
  await c?.stop();
});

async function open(i, claims = {}, opts = {}) {
  const sub = claims.sub ?? unique("user");
  const s = c.connect(i, t, { auth: { token: t.token({ ...claims, sub }) }, ...opts });
  const session = await connected(s);
  return { s, sub, session };
}

describe("fan-out across nodes", () => {
  it("reaches every subscriber on every node exactly once, not the publisher", async () => {
    const room = unique("room");
    const subs = [];
    for (let i = 0; i < 6; i++) {
      const { s } = await open(i % 3);
      assert.deepEqual(await ack(s, "subscribe", { room }), { ok: true });
      subs.push({ s, got: collect(s, "chat") });
    }
    const { s: pub } = await open(0);
    assert.deepEqual(await ack(pub, "subscribe", { room }), { ok: true });
    const mine = collect(pub, "chat");
    const markers = subs.map(({ s }) => once(s, "marker"));
    const acks = [];
    for (let n = 0; n < 20; n++) acks.push(await ack(pub, "publish", { room, event: "chat", data: { n } }));
    assert.ok(acks.every((a) => a.ok));
    // A marker with echo proves the publisher got everything it would get.
    const marker = once(pub, "marker");
    await ack(pub, "publish", { room, event: "marker", data: 1, echo: true });
    await marker;
    for (const { got } of subs) {
      const items = await got.count(20);
      assert.deepEqual(items.map(([d]) => d.n), [...Array(20).keys()], "in publish order");
      assert.deepEqual(items.map(([, m]) => m.offset), acks.map((a) => a.offset));
    }
    // Exactly once: after the marker reached everyone, no extra copies arrived.
    await Promise.all(markers);
    for (const { got } of subs) assert.equal(got.items.length, 20);
    assert.equal(mine.items.length, 0, "the publisher does not get its own messages");
  });

  it("a server-side publish reaches subscribers on all nodes with from: null", async () => {
    const room = unique("room");
    const socks = [];
    for (let i = 0; i < 3; i++) {
      const { s } = await open(i);
      await ack(s, "subscribe", { room });
      socks.push(s);
    }
    const waits = socks.map((s) => once(s, "news"));
    const r = await c.api("POST", `/tenants/${t.id}/rooms/${room}/messages`, { event: "news", data: { x: 1 } });
    assert.equal(r.status, 202);
    for (const w of waits) {
      const [data, meta] = await w;
      assert.deepEqual(data, { x: 1 });
      assert.equal(meta.from, null);
      assert.equal(meta.offset, r.body.offset);
    }
  });

  it("routes by interest: a node without members of a room receives none of its messages", async () => {
    const room = unique("room");
    const before2 = await c.metric(2, "switchboard_bus_received_total", { tenant: t.id });
    const { s: a } = await open(0);
    const { s: b } = await open(1);
    await ack(b, "subscribe", { room });
    const got = collect(b, "e");
    for (let n = 0; n < 10; n++) await ack(a, "publish", { room, event: "e", data: n });
    await got.count(10);
    const after2 = await c.metric(2, "switchboard_bus_received_total", { tenant: t.id });
    assert.equal(after2 - before2, 0, "edge 2 has no member of the room and received nothing");
    assert.ok((await c.metric(1, "switchboard_bus_received_total", { tenant: t.id })) >= 10);
  });
});

describe("shared state across nodes", () => {
  it("presence and rooms are answered across nodes", async () => {
    const room = unique("room");
    const users = [];
    for (let i = 0; i < 3; i++) {
      const u = await open(i, { meta: { node: i } });
      await ack(u.s, "subscribe", { room });
      users.push(u);
    }
    const p = await ack(users[0].s, "presence", { room });
    assert.equal(p.ok, true);
    assert.deepEqual(p.members.map((m) => m.sub).sort(), users.map((u) => u.sub).sort());
    const r = await c.api("GET", `/tenants/${t.id}/rooms`);
    assert.equal(r.body.rooms.find((x) => x.name === room)?.subscribers, 3);
    const conns = await c.api("GET", `/tenants/${t.id}/connections?sub=${users[2].sub}`);
    assert.equal(conns.body.connections.length, 1);
  });

  it("presence:join from another node reaches watchers", async () => {
    const room = unique("room");
    const { s: watcher } = await open(0);
    await ack(watcher, "subscribe", { room });
    // The watcher's own join may still be on its way: look for the other user's.
    const joins = collect(watcher, "presence:join");
    const { s: other, sub } = await open(2, { meta: { n: "x" } });
    await ack(other, "subscribe", { room });
    const [ev] = await joins.find((e) => e.sub === sub);
    assert.deepEqual(ev, { room, sub, meta: { n: "x" } });
  });

  it("a ticket issued on one edge works once on another", async () => {
    const token = t.token();
    const r = await fetch(`${c.edge(0).base}/v1/tickets`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 201);
    const { ticket } = await r.json();
    const s1 = c.connect(1, t, { auth: { ticket } });
    await connected(s1);
    const s2 = c.connect(2, t, { auth: { ticket } });
    const err = await once(s2, "connect_error");
    assert.equal(err[0].message, "ticket_invalid");
  });
});

describe("revocation and kicks across nodes", () => {
  it("a revocation ends the user's sockets on every node", async () => {
    const sub = unique("victim");
    const socks = [];
    for (let i = 0; i < 3; i++) socks.push((await open(i, { sub })).s);
    const ends = socks.map((s) => once(s, "session_end"));
    const started = Date.now();
    const r = await c.api("POST", `/tenants/${t.id}/revocations`, { sub });
    assert.equal(r.status, 201);
    for (const e of ends) assert.equal((await e)[0].code, "token_revoked");
    const ms = Date.now() - started;
    assert.ok(ms < 2000, `revocation took ${ms} ms`);
    // And a new handshake with an old token is refused on any node.
    const again = c.connect(1, t, { auth: { token: t.token({ sub, iat: Math.floor(Date.now() / 1000) - 60 }) } });
    assert.equal((await once(again, "connect_error"))[0].message, "token_revoked");
  });

  it("a kick ends the user's sockets on every node", async () => {
    const sub = unique("kicked");
    const socks = [];
    for (let i = 0; i < 3; i++) socks.push((await open(i, { sub })).s);
    const ends = socks.map((s) => once(s, "session_end"));
    const r = await c.api("DELETE", `/tenants/${t.id}/connections?sub=${sub}`);
    assert.ok(r.status === 202 || r.status === 204, JSON.stringify(r));
    for (const e of ends) assert.equal((await e)[0].code, "kicked");
  });
});

describe("resume across nodes", () => {
  it("a client resumes on another node and gets what it missed, in order, once", async () => {
    const room = unique("room");
    const sub = unique("resumer");
    const first = await open(0, { sub });
    await ack(first.s, "subscribe", { room });
    const { s: pub } = await open(1);
    const seen = collect(first.s, "m");
    await ack(pub, "publish", { room, event: "m", data: 0 });
    const [[, meta0]] = await seen.count(1);
    first.s.disconnect();
    const missed = [];
    for (let n = 1; n <= 5; n++) missed.push(await ack(pub, "publish", { room, event: "m", data: n }));
    const again = c.connect(2, t, {
      auth: { token: t.token({ sub }), resume: { session: first.session.id, offsets: { [room]: meta0.offset } } },
    });
    const got = collect(again, "m");
    const session = await connected(again);
    assert.deepEqual(session, { id: first.session.id, recovered: true });
    const items = await got.count(5);
    assert.deepEqual(items.map(([d]) => d), [1, 2, 3, 4, 5]);
    // Live messages follow the replay, and nothing is duplicated.
    await ack(pub, "publish", { room, event: "m", data: 6 });
    const all = await got.count(6);
    assert.deepEqual(all.map(([d]) => d), [1, 2, 3, 4, 5, 6]);
  });

  it("an unknown session is not recovered", async () => {
    const s = c.connect(0, t, { auth: { token: t.token(), resume: { session: "nope", offsets: {} } } });
    const session = await connected(s);
    assert.equal(session.recovered, false);
    assert.notEqual(session.id, "nope");
  });
});

describe("faults", () => {
  it("publishing resumes after NATS is killed and restarted", async () => {
    const room = unique("room");
    const { s: a } = await open(0);
    const { s: b } = await open(1);
    await ack(b, "subscribe", { room });
    await c.killNats();
    const down = await ack(a, "publish", { room, event: "x", data: 0 }, 10000);
    assert.equal(down.ok, false);
    assert.equal(down.error.code, "unavailable");
    const got = collect(b, "x");
    await c.restartNats();
    const deadline = Date.now() + 20000;
    let n = 1;
    let sent;
    for (;;) {
      const r = await ack(a, "publish", { room, event: "x", data: n }, 10000);
      if (r.ok) {
        sent = n;
        break;
      }
      n++;
      assert.ok(Date.now() < deadline, "publishing did not resume");
      await new Promise((res) => setTimeout(res, 200));
    }
    // Whether b's node reconnected before or after that publish, it gets it: a node
    // catches up from the stream after an outage.
    await got.find((d) => d === sent, 15000);
  });

  it("Redis down: cached tokens still connect, tickets and writes say unavailable, /readyz reports it, all recovers", async () => {
    const t2 = await c.tenant();
    // Warm edge 1's cache for this tenant.
    const warm = c.connect(1, t2, { auth: { token: t2.token() } });
    await connected(warm);
    await c.killRedis();
    try {
      const s = c.connect(1, t2, { auth: { token: t2.token() } });
      await connected(s, 10000);
      const ticket = await fetch(`${c.edge(1).base}/v1/tickets`, {
        method: "POST",
        headers: { authorization: `Bearer ${t2.token()}` },
        signal: AbortSignal.timeout(10000),
      });
      assert.equal(ticket.status, 503);
      assert.equal(ticket.headers.get("content-type"), "application/problem+json");
      assert.equal((await ticket.json()).code, "unavailable");
      const ready = await fetch(`${c.edge(1).base}/readyz`, { signal: AbortSignal.timeout(10000) });
      assert.equal(ready.status, 503);
      const rev = await c.api("POST", `/tenants/${t2.id}/revocations`, { sub: "x" });
      assert.equal(rev.status, 503);
      assert.equal(rev.body.code, "unavailable");
    } finally {
      await c.restartRedis();
    }
    const deadline = Date.now() + 20000;
    for (;;) {
      const r = await fetch(`${c.edge(1).base}/v1/tickets`, { method: "POST", headers: { authorization: `Bearer ${t2.token()}` } });
      if (r.status === 201) break;
      assert.ok(Date.now() < deadline, `tickets still failing after Redis came back: ${r.status}`);
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal((await fetch(`${c.edge(1).base}/readyz`)).status, 200);
  });

  it("revocations survive an edge restart", async () => {
    const sub = unique("revoked");
    const old = t.token({ sub, iat: Math.floor(Date.now() / 1000) - 10 });
    const r = await c.api("POST", `/tenants/${t.id}/revocations`, { sub });
    assert.equal(r.status, 201);
    await c.killEdge(1);
    await c.restartEdge(1);
    const s = c.connect(1, t, { auth: { token: old } });
    assert.equal((await once(s, "connect_error"))[0].message, "token_revoked");
  });

  it("a node killed with SIGKILL leaves connections and presence in time", async () => {
    const room = unique("room");
    const { s: watcher } = await open(0);
    await ack(watcher, "subscribe", { room });
    const { s: doomed, sub } = await open(2);
    await ack(doomed, "subscribe", { room });
    let p = await ack(watcher, "presence", { room });
    assert.ok(p.members.some((m) => m.sub === sub));
    await c.killEdge(2);
    const deadline = Date.now() + 30000;
    for (;;) {
      p = await ack(watcher, "presence", { room });
      const conns = await c.api("GET", `/tenants/${t.id}/connections?sub=${sub}`);
      if (!p.members.some((m) => m.sub === sub) && conns.body.connections.length === 0) break;
      assert.ok(Date.now() < deadline, "the dead node's members are still present after 30 s");
      await new Promise((res) => setTimeout(res, 250));
    }
    await c.restartEdge(2);
  });
});
