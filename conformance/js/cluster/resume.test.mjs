// SPEC 3.7 and the drain of SPEC §4: resume on any node, drain on SIGTERM, and a rolling
// restart under continuous publishing with zero messages lost or duplicated.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { io } from "socket.io-client";

import { Cluster } from "../lib/cluster.mjs";
import { ack, collect, connected, once, sleep, unique, WAIT_MS } from "../lib/server.mjs";

let c;
let t;
before(async () => {
  c = await new Cluster().edges(3).start();
  t = await c.tenant();
});
after(async () => {
  await c?.stop();
});

/**
 * The README's client recipe: keeps `session` and the last offset per room in an `auth`
 * callback, resubscribes when a session is not recovered, and comes back after a drain.
 */
function resumingClient(url, token, rooms) {
  let session = null;
  let offsets = {};
  const socket = io(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    auth: (cb) => cb({ token, resume: session ? { session, offsets } : undefined }),
  });
  // What happened to this client, printed when the test fails.
  const t0 = Date.now();
  socket.history = [];
  const note = (...what) => socket.history.push(`${Date.now() - t0}ms ${what.map((w) => JSON.stringify(w)).join(" ")}`);
  socket.on("connect", () => note("connect", socket.id));
  socket.on("disconnect", (r) => note("disconnect", r));
  socket.on("connect_error", (e) => note("connect_error", e.message));
  socket.on("session", (s) => note("session", s, offsets));
  socket.on("session_end", (e) => note("session_end", e));
  socket.io.on("reconnect_attempt", (n) => note("reconnect_attempt", n));
  socket.io.on("error", (e) => note("manager error", String(e)));
  socket.on("session", (s) => {
    session = s.id;
    if (!s.recovered) {
      offsets = {};
      for (const room of rooms) socket.emit("subscribe", { room });
    }
  });
  socket.onAny((event, data, meta) => {
    if (meta && meta.offset) offsets[meta.room] = meta.offset;
  });
  const retry = () => setTimeout(() => socket.connect(), 100 + Math.random() * 300);
  socket.on("session_end", (e) => {
    if (e.code === "draining") socket.once("disconnect", retry);
  });
  socket.on("connect_error", (e) => {
    if (e.message === "unavailable" || e.message === "rate_limited") retry();
  });
  return socket;
}

describe("resume", () => {
  it("on the same node", async () => {
    const room = unique("room");
    const sub = unique("u");
    const a = c.connect(0, t, { auth: { token: t.token({ sub }) } });
    const s1 = await connected(a);
    await ack(a, "subscribe", { room });
    a.disconnect();
    const sent = [];
    for (let n = 0; n < 3; n++) sent.push(await c.api("POST", `/tenants/${t.id}/rooms/${room}/messages`, { event: "m", data: n }));
    const b = c.connect(0, t, { auth: { token: t.token({ sub }), resume: { session: s1.id, offsets: {} } } });
    const got = collect(b, "m");
    assert.deepEqual(await connected(b), { id: s1.id, recovered: true });
    const items = await got.count(3);
    assert.deepEqual(items.map(([d]) => d), [0, 1, 2]);
    assert.deepEqual(items.map(([, m]) => m.offset), sent.map((r) => r.body.offset));
  });

  it("after its node was killed with SIGKILL", async () => {
    const room = unique("room");
    const sub = unique("u");
    const a = c.connect(2, t, { auth: { token: t.token({ sub }) } });
    const s1 = await connected(a);
    await ack(a, "subscribe", { room });
    const seen = collect(a, "m");
    await c.api("POST", `/tenants/${t.id}/rooms/${room}/messages`, { event: "m", data: 0 });
    const [[, m0]] = await seen.count(1);
    await c.killEdge(2);
    for (let n = 1; n <= 4; n++) await c.api("POST", `/tenants/${t.id}/rooms/${room}/messages`, { event: "m", data: n });
    const b = c.connect(1, t, { auth: { token: t.token({ sub }), resume: { session: s1.id, offsets: { [room]: m0.offset } } } });
    const got = collect(b, "m");
    assert.deepEqual(await connected(b), { id: s1.id, recovered: true });
    assert.deepEqual((await got.count(4)).map(([d]) => d), [1, 2, 3, 4]);
    await c.restartEdge(2);
  });

  it("after the recovery window: recovered false, a fresh session, no replay", async () => {
    const t2 = await c.tenant({ recovery_window_seconds: 1 });
    const room = unique("room");
    const sub = unique("u");
    const a = c.connect(0, t2, { auth: { token: t2.token({ sub }) } });
    const s1 = await connected(a);
    await ack(a, "subscribe", { room });
    a.disconnect();
    await c.api("POST", `/tenants/${t2.id}/rooms/${room}/messages`, { event: "m", data: 1 });
    await sleep(2500); // let the window pass: the point of the test
    const b = c.connect(1, t2, { auth: { token: t2.token({ sub }), resume: { session: s1.id, offsets: {} } } });
    const got = collect(b, "m");
    const s2 = await connected(b);
    assert.equal(s2.recovered, false);
    assert.notEqual(s2.id, s1.id);
    // Fresh start: not subscribed; a new message in the room does not reach it.
    const { s: probe } = { s: c.connect(1, t2, { auth: { token: t2.token() } }) };
    await connected(probe);
    await ack(probe, "subscribe", { room });
    const marker = once(probe, "m");
    await c.api("POST", `/tenants/${t2.id}/rooms/${room}/messages`, { event: "m", data: 2 });
    await marker;
    assert.equal(got.items.length, 0);
  });

  it("a revoked token does not resume", async () => {
    const room = unique("room");
    const sub = unique("u");
    const a = c.connect(0, t, { auth: { token: t.token({ sub, iat: Math.floor(Date.now() / 1000) - 5 }) } });
    const s1 = await connected(a);
    await ack(a, "subscribe", { room });
    a.disconnect();
    await c.api("POST", `/tenants/${t.id}/revocations`, { sub });
    const b = c.connect(1, t, {
      auth: { token: t.token({ sub, iat: Math.floor(Date.now() / 1000) - 5 }), resume: { session: s1.id, offsets: {} } },
    });
    assert.equal((await once(b, "connect_error"))[0].message, "token_revoked");
  });

  it("another user's session is not recovered", async () => {
    const a = c.connect(0, t, { auth: { token: t.token() } });
    const s1 = await connected(a);
    await ack(a, "subscribe", { room: unique("room") });
    const b = c.connect(0, t, { auth: { token: t.token(), resume: { session: s1.id, offsets: {} } } });
    const s2 = await connected(b);
    assert.equal(s2.recovered, false);
    assert.notEqual(s2.id, s1.id);
  });
});

describe("drain", () => {
  it("SIGTERM: /readyz 503, new sockets refused, open ones get session_end draining", async () => {
    await c.killEdge(2);
    await c.restartEdge(2, ["--drain-seconds", "3"]);
    const a = c.connect(2, t, { auth: { token: t.token() } });
    const b = c.connect(2, t, { auth: { token: t.token() } });
    await Promise.all([connected(a), connected(b)]);
    const end = once(a, "session_end", 10000);
    const endB = once(b, "session_end", 10000);
    c.edge(2).proc.child.kill("SIGTERM");
    const deadline = Date.now() + 3000;
    let status;
    for (;;) {
      status = (await fetch(`${c.edge(2).base}/readyz`)).status;
      if (status === 503 || Date.now() > deadline) break;
      await sleep(20);
    }
    assert.equal(status, 503);
    const late = c.connect(2, t, { auth: { token: t.token() } });
    assert.equal((await once(late, "connect_error"))[0].message, "unavailable");
    assert.equal((await end)[0].code, "draining");
    // The refused handshake above must not have touched the sockets still waiting for
    // their batch (it once deleted the whole tenant namespace, closing them silently).
    assert.equal((await endB)[0].code, "draining");
    await c.edge(2).proc.exited;
    await c.restartEdge(2);
  });
});

describe("rolling restart", () => {
  it("3 edges restarted one by one under continuous publishing: nothing lost, nothing duplicated", async () => {
    const room = unique("room");
    const clients = [];
    for (let i = 0; i < 6; i++) {
      const s = resumingClient(`${c.edge(i % 3).base}/${t.id}`, t.token(), [room]);
      const got = collect(s, "seq");
      clients.push({ s, got });
    }
    // Everyone subscribed (the recipe subscribes on its first session).
    const deadline0 = Date.now() + WAIT_MS;
    for (;;) {
      const r = await c.api("GET", `/tenants/${t.id}/rooms`);
      if (r.body.rooms.find((x) => x.name === room)?.subscribers === 6) break;
      assert.ok(Date.now() < deadline0, "clients did not all subscribe");
      await sleep(50);
    }
    let n = 0;
    let publishing = true;
    const publisher = (async () => {
      while (publishing) {
        const r = await c.api("POST", `/tenants/${t.id}/rooms/${room}/messages`, { event: "seq", data: n });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        n++;
        await sleep(10);
      }
    })();
    try {
      for (let i = 0; i < 3; i++) await c.rollEdge(i);
      publishing = false;
      await publisher;
      for (const [i, { s, got }] of clients.entries()) {
        let items;
        try {
          items = await got.count(n, 20000);
        } catch (e) {
          throw new Error(`client ${i} (edge ${i % 3}): ${e.message}\n${s.history.join("\n")}`);
        }
        assert.deepEqual(items.map(([d]) => d), [...Array(n).keys()], "every message once, in order");
      }
    } finally {
      // These clients reconnect by themselves: stop them, or the test process never ends.
      publishing = false;
      for (const { s } of clients) s.disconnect();
    }
    console.log(`rolling restart: ${n} messages to 6 resuming clients, 0 lost, 0 duplicated`);
  });
});
