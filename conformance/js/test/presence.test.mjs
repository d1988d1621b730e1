// SPEC §3.5 `presence` and §3.6 `presence:join` / `presence:leave`.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { TRANSPORTS, ack, collect, errorCode, once, open, startServer, unique } from "../lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

const bySub = (members) => Object.fromEntries(members.map((m) => [m.sub, m]));

for (const transports of TRANSPORTS) {
  describe(`presence over ${transports[0]}`, () => {
    test("presence of an empty room is an empty list", async () => {
      const { socket } = await open(srv, { transports });
      const a = await ack(socket, "presence", { room: unique("room") });
      assert.deepEqual(a, { ok: true, members: [] });
      socket.disconnect();
    });

    test("presence lists each user once with its meta and connection count", async () => {
      const room = unique("room");
      const alice = unique("alice");
      const bob = unique("bob");
      const a1 = await open(srv, { transports, claims: { sub: alice, meta: { name: "Alice", n: 1 } } });
      const a2 = await open(srv, { transports, claims: { sub: alice, meta: { name: "Alice", n: 1 } } });
      const b1 = await open(srv, { transports, claims: { sub: bob } });
      for (const s of [a1, a2, b1]) assert.deepEqual(await ack(s.socket, "subscribe", { room }), { ok: true });

      const a = await ack(b1.socket, "presence", { room });
      assert.equal(a.ok, true, JSON.stringify(a));
      assert.ok(Array.isArray(a.members));
      assert.equal(a.members.length, 2, JSON.stringify(a.members));
      const m = bySub(a.members);
      assert.deepEqual(Object.keys(m[alice]).sort(), ["connections", "meta", "sub"]);
      assert.deepEqual(m[alice].meta, { name: "Alice", n: 1 });
      assert.equal(m[alice].connections, 2);
      assert.equal(m[bob].connections, 1);
      assert.ok(m[bob].meta === null || (typeof m[bob].meta === "object" && Object.keys(m[bob].meta).length === 0), `meta of a token without meta: ${JSON.stringify(m[bob].meta)}`);

      // A user leaving one of two connections stays, with one connection fewer.
      assert.deepEqual(await ack(a2.socket, "unsubscribe", { room }), { ok: true });
      const after1 = bySub((await ack(b1.socket, "presence", { room })).members);
      assert.equal(after1[alice].connections, 1);
      // Leaving its last connection removes it.
      assert.deepEqual(await ack(a1.socket, "unsubscribe", { room }), { ok: true });
      const after2 = (await ack(b1.socket, "presence", { room })).members;
      assert.deepEqual(after2.map((x) => x.sub), [bob]);
      for (const s of [a1, a2, b1]) s.socket.disconnect();
    });

    test("presence may be asked without being subscribed", async () => {
      const room = unique("room");
      const member = await open(srv, { transports });
      await ack(member.socket, "subscribe", { room });
      const outsider = await open(srv, { transports });
      const a = await ack(outsider.socket, "presence", { room });
      assert.deepEqual(a.members.map((m) => m.sub), [member.sub]);
      member.socket.disconnect();
      outsider.socket.disconnect();
    });

    test("a disconnect removes the user from presence", async () => {
      const room = unique("room");
      const watcher = await open(srv, { transports });
      await ack(watcher.socket, "subscribe", { room });
      const leaver = await open(srv, { transports });
      await ack(leaver.socket, "subscribe", { room });
      const left = collect(watcher.socket, "presence:leave");
      leaver.socket.disconnect();
      await left.find((p) => p.sub === leaver.sub);
      const a = await ack(watcher.socket, "presence", { room });
      assert.deepEqual(a.members.map((m) => m.sub), [watcher.sub]);
      watcher.socket.disconnect();
    });

    test("presence:join and presence:leave for a user's first connection in and last out", async () => {
      const room = unique("room");
      const watcher = await open(srv, { transports });
      const joins = collect(watcher.socket, "presence:join");
      const leaves = collect(watcher.socket, "presence:leave");
      assert.deepEqual(await ack(watcher.socket, "subscribe", { room }), { ok: true });

      const bob = unique("bob");
      const meta = { name: "Bob" };
      const b1 = await open(srv, { transports, claims: { sub: bob, meta } });
      assert.deepEqual(await ack(b1.socket, "subscribe", { room }), { ok: true });
      const [join] = await joins.find((p) => p.sub === bob);
      assert.deepEqual(join, { room, sub: bob, meta });

      // Bob's second connection: no join. A third user's join proves nothing came before.
      const b2 = await open(srv, { transports, claims: { sub: bob, meta } });
      assert.deepEqual(await ack(b2.socket, "subscribe", { room }), { ok: true });
      const carol = unique("carol");
      const c1 = await open(srv, { transports, claims: { sub: carol } });
      assert.deepEqual(await ack(c1.socket, "subscribe", { room }), { ok: true });
      await joins.find((p) => p.sub === carol);
      assert.equal(joins.items.filter(([p]) => p.sub === bob).length, 1, `bob joined once: ${JSON.stringify(joins.items)}`);

      // Bob's first connection leaves: no leave, he is still there. Carol's leave proves it.
      assert.deepEqual(await ack(b1.socket, "unsubscribe", { room }), { ok: true });
      assert.deepEqual(await ack(c1.socket, "unsubscribe", { room }), { ok: true });
      const [cl] = await leaves.find((p) => p.sub === carol);
      assert.equal(cl.room, room);
      assert.equal(leaves.items.filter(([p]) => p.sub === bob).length, 0, `bob left too early: ${JSON.stringify(leaves.items)}`);

      // Bob's last connection goes (by disconnecting): now he leaves.
      b2.socket.disconnect();
      const [bl] = await leaves.find((p) => p.sub === bob);
      assert.deepEqual(bl, { room, sub: bob, meta });

      for (const s of [watcher, b1, c1]) s.socket.disconnect();
    });

    test("a subscriber does not get presence events of other rooms", async () => {
      const room = unique("room");
      const other = unique("room");
      const watcher = await open(srv, { transports });
      const joins = collect(watcher.socket, "presence:join");
      await ack(watcher.socket, "subscribe", { room });
      const x = await open(srv, { transports });
      await ack(x.socket, "subscribe", { room: other });
      const y = await open(srv, { transports });
      await ack(y.socket, "subscribe", { room });
      await joins.find((p) => p.sub === y.sub);
      assert.ok(joins.items.every(([p]) => p.room === room), JSON.stringify(joins.items));
      assert.equal(joins.items.filter(([p]) => p.sub === x.sub).length, 0);
      for (const s of [watcher, x, y]) s.socket.disconnect();
    });

    test("a subscribe immediately followed by disconnect leaves no ghost in presence", async () => {
      // An ordinary client pattern: emit, then disconnect at once. The server must not keep
      // a member (or its room subscription) for a socket that is gone.
      // The outcome is a race inside the server: try it on 50 connections, 3 rooms each.
      const N = 50;
      const rooms = [];
      await Promise.all(
        Array.from({ length: N }, async () => {
          const { socket } = await open(srv, { transports });
          for (let k = 0; k < 3; k++) {
            const room = unique("ghost");
            rooms.push(room);
            socket.emit("subscribe", { room });
          }
          socket.disconnect();
        }),
      );
      const { socket } = await open(srv, { transports });
      // Presence may lag the disconnects a little: give the rooms up to 3 s to empty.
      const deadline = Date.now() + 3000;
      let left = rooms;
      let ghosts = [];
      for (;;) {
        ghosts = [];
        const still = [];
        for (const room of left) {
          const members = (await ack(socket, "presence", { room })).members;
          if (members.length) {
            still.push(room);
            ghosts.push(`${room}: ${JSON.stringify(members)}`);
          }
        }
        left = still;
        if (left.length === 0 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(ghosts.slice(0, 3), [], `${ghosts.length} of ${rooms.length} rooms keep a member whose socket is gone`);
      socket.disconnect();
    });

    test("subscribers without the presence right get no presence events", async () => {
      const room = unique("room");
      const blind = await open(srv, { transports, claims: { caps: { [room]: ["subscribe"] } } });
      const joins = collect(blind.socket, "presence:join");
      assert.deepEqual(await ack(blind.socket, "subscribe", { room }), { ok: true });
      const joiner = await open(srv, { transports });
      assert.deepEqual(await ack(joiner.socket, "subscribe", { room }), { ok: true });
      // A message published after the join reaches `blind`; a join event would be before it.
      const msg = once(blind.socket, "after-join");
      assert.equal((await ack(joiner.socket, "publish", { room, event: "after-join", data: 1 })).ok, true);
      await msg;
      assert.equal(joins.items.length, 0, `presence:join without the presence right: ${JSON.stringify(joins.items)}`);
      // And the presence query is forbidden for it.
      assert.equal(errorCode(await ack(blind.socket, "presence", { room })), "forbidden");
      blind.socket.disconnect();
      joiner.socket.disconnect();
    });
  });
}
