// A Redis outage longer than the nodes' liveness TTL: every node's connection, subscription
// and presence records expire although its sockets are fine. Once Redis answers again, the
// nodes write them back by themselves — no restart, no reconnect.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Cluster } from "../lib/cluster.mjs";
import { ack, connected, sleep, unique } from "../lib/server.mjs";

const LIVENESS_SECONDS = 2;

let c;
let t;
before(async () => {
  c = await new Cluster().edges(2).withEdgeArgs(["--state-liveness-seconds", String(LIVENESS_SECONDS)]).start();
  t = await c.tenant();
});
after(async () => {
  await c?.stop();
});

async function snapshot(room) {
  const conns = await c.api("GET", `/tenants/${t.id}/connections`);
  const presence = await c.api("GET", `/tenants/${t.id}/rooms/${room}/presence`);
  const rooms = await c.api("GET", `/tenants/${t.id}/rooms`);
  return {
    conns: conns.status === 200 ? conns.body.connections.map((x) => x.sub).sort() : null,
    members: presence.status === 200 ? presence.body.members.map((m) => m.sub).sort() : null,
    subscribers: rooms.status === 200 ? rooms.body.rooms.find((r) => r.name === room)?.subscribers ?? 0 : null,
  };
}

describe("records lapse during a Redis outage", () => {
  it("are written again by every node once Redis is back", async () => {
    const room = unique("room");
    const subs = [unique("u"), unique("u")];
    const sockets = [];
    for (const [i, sub] of subs.entries()) {
      const s = c.connect(i, t, { auth: { token: t.token({ sub }) } });
      await connected(s);
      assert.deepEqual(await ack(s, "subscribe", { room }), { ok: true });
      sockets.push(s);
    }
    const expected = { conns: [...subs].sort(), members: [...subs].sort(), subscribers: 2 };
    assert.deepEqual(await snapshot(room), expected);

    // Freeze Redis for longer than the liveness TTL: the nodes' heartbeats cannot reach
    // it, and when it wakes their liveness keys have expired (the point of the test).
    c.redis.child.kill("SIGSTOP");
    await sleep(LIVENESS_SECONDS * 1000 + 1500);
    c.redis.child.kill("SIGCONT");

    const deadline = Date.now() + 15000;
    let last;
    for (;;) {
      last = await snapshot(room);
      if (JSON.stringify(last) === JSON.stringify(expected)) break;
      assert.ok(Date.now() < deadline, `records not restored: ${JSON.stringify(last)}`);
      await sleep(200);
    }
    // The sockets never noticed.
    for (const s of sockets) assert.ok(s.connected);
    for (const s of sockets) s.disconnect();
  });
});
