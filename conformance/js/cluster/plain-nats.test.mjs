// A plain NATS server without JetStream (the NATS Helm chart's default): edges and admin
// start, fan-out, presence, revocation and the admin API work across nodes, and room
// history is off — said at start-up and in a metric, and a resume that would need it
// answers `recovered: false` (never a silent gap). SPEC §2, 3.7.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Cluster } from "../lib/cluster.mjs";
import { ack, collect, connected, once, unique } from "../lib/server.mjs";

let c;
let t;
before(async () => {
  c = await new Cluster().edges(2).jetstream(false).start();
  t = await c.tenant();
});
after(async () => {
  await c?.stop();
});

describe("a plain NATS server (no JetStream)", () => {
  it("edges say history is off, at start-up and in /metrics", async () => {
    assert.match(c.logs(), /no JetStream: room history is off/);
    assert.equal(await c.metric(0, "switchboard_bus_history_enabled"), 0);
    assert.equal(await c.metric(1, "switchboard_bus_history_enabled"), 0);
  });

  it("fans out across nodes, in order, from clients and the admin API", async () => {
    const room = unique("room");
    const sub = c.connect(1, t, { auth: { token: t.token() } });
    await connected(sub);
    assert.deepEqual(await ack(sub, "subscribe", { room }), { ok: true });
    const got = collect(sub, "chat");
    const pub = c.connect(0, t, { auth: { token: t.token() } });
    await connected(pub);
    for (let n = 0; n < 10; n++) {
      const a = await ack(pub, "publish", { room, event: "chat", data: { n } });
      assert.equal(a.ok, true, JSON.stringify(a));
    }
    const r = await c.api("POST", `/tenants/${t.id}/rooms/${room}/messages`, { event: "chat", data: { n: 10 } });
    assert.equal(r.status, 202, JSON.stringify(r));
    const items = await got.count(11);
    assert.deepEqual(items.map(([d]) => d.n), [...Array(11).keys()]);
    assert.equal(items[10][1].from, null);
  });

  it("presence events and revocations reach the other node", async () => {
    const room = unique("room");
    const watcher = c.connect(0, t, { auth: { token: t.token() } });
    await connected(watcher);
    assert.deepEqual(await ack(watcher, "subscribe", { room }), { ok: true });
    const sub = unique("user");
    // The watcher's own join may arrive too: wait for the other user's.
    const joined = new Promise((res) => watcher.on("presence:join", (e) => e.sub === sub && res([e])));
    const other = c.connect(1, t, { auth: { token: t.token({ sub }) } });
    await connected(other);
    assert.deepEqual(await ack(other, "subscribe", { room }), { ok: true });
    assert.equal((await joined)[0].sub, sub);
    const ended = once(other, "session_end");
    const r = await c.api("POST", `/tenants/${t.id}/revocations`, { sub });
    assert.equal(r.status, 201, JSON.stringify(r));
    assert.equal((await ended)[0].code, "token_revoked");
  });

  it("a resume that would need history answers recovered: false, and the client starts fresh", async () => {
    const room = unique("room");
    const token = t.token();
    const first = c.connect(0, t, { auth: { token } });
    const { id: session } = (await once(first, "session"))[0];
    assert.deepEqual(await ack(first, "subscribe", { room }), { ok: true });
    const seen = once(first, "chat");
    const pub = c.connect(1, t, { auth: { token: t.token() } });
    await connected(pub);
    const a = await ack(pub, "publish", { room, event: "chat", data: 1 });
    const [, meta] = await seen;
    assert.equal(meta.offset, a.offset);
    first.disconnect();
    await ack(pub, "publish", { room, event: "chat", data: 2 });
    const back = c.connect(1, t, { auth: { token, resume: { session, offsets: { [room]: meta.offset } } } });
    const s = (await once(back, "session"))[0];
    assert.equal(s.recovered, false, "no history: the missed message cannot be promised");
    assert.notEqual(s.id, session);
  });
});
