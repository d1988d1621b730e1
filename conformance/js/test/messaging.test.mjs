// SPEC §3.5 / §3.6: subscribe, unsubscribe, publish, acks, delivery `(data, meta)`,
// echo, ordering.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  TRANSPORTS,
  ack,
  collect,
  compareOffsets,
  errorCode,
  once,
  open,
  startServer,
  unique,
  WAIT_MS,
} from "../lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

/** A publisher and a subscriber on the same fresh room, both connected and subscribed. */
async function pair(transports, { subscribeBoth = false } = {}) {
  const room = unique("room");
  const pub = await open(srv, { transports });
  const sub = await open(srv, { transports });
  assert.deepEqual(await ack(sub.socket, "subscribe", { room }), { ok: true });
  if (subscribeBoth) assert.deepEqual(await ack(pub.socket, "subscribe", { room }), { ok: true });
  return { room, pub, sub, close: () => (pub.socket.disconnect(), sub.socket.disconnect()) };
}

for (const transports of TRANSPORTS) {
  describe(`messaging over ${transports[0]}`, () => {
    test("subscribe and unsubscribe answer {ok: true}", async () => {
      const { socket } = await open(srv, { transports });
      const room = unique("room");
      assert.deepEqual(await ack(socket, "subscribe", { room }), { ok: true });
      assert.deepEqual(await ack(socket, "subscribe", { room }), { ok: true }, "subscribing twice is harmless");
      assert.deepEqual(await ack(socket, "unsubscribe", { room }), { ok: true });
      assert.deepEqual(await ack(socket, "unsubscribe", { room }), { ok: true }, "unsubscribing a room not joined is harmless");
      socket.disconnect();
    });

    test("publish acks {ok, id, offset} and subscribers get (data, meta)", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const got = once(sub.socket, "chat.message");
      const before = Date.now();
      const a = await ack(pub.socket, "publish", { room, event: "chat.message", data: { text: "hi", n: 1 } });
      const afterTs = Date.now();
      assert.equal(a.ok, true, JSON.stringify(a));
      assert.equal(typeof a.id, "string");
      assert.ok(a.id.length > 0);
      assert.equal(typeof a.offset, "string");
      assert.ok(a.offset.length > 0);

      const args = await got;
      assert.equal(args.length, 2, `delivered with exactly (data, meta): ${JSON.stringify(args)}`);
      const [data, meta] = args;
      assert.deepEqual(data, { text: "hi", n: 1 });
      assert.deepEqual(Object.keys(meta).sort(), ["from", "id", "offset", "room", "ts"]);
      assert.equal(meta.room, room);
      assert.equal(meta.id, a.id, "meta.id is the id the publisher was acked");
      assert.equal(meta.offset, a.offset, "meta.offset is the offset the publisher was acked");
      assert.equal(meta.from, pub.sub, "meta.from is the publisher's sub");
      assert.equal(typeof meta.ts, "number");
      assert.ok(Number.isInteger(meta.ts), "ts is integer milliseconds");
      assert.ok(meta.ts >= before - 5000 && meta.ts <= afterTs + 5000, `ts ${meta.ts} is milliseconds since the epoch, near now`);
      close();
    });

    test("any JSON value travels unchanged as data", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const values = [
        "a string",
        "",
        0,
        -1.5,
        12345678901234,
        true,
        false,
        null,
        [],
        [1, "two", { three: 3 }],
        {},
        { nested: { deep: [{ a: null }] }, unicode: "héllo wörld ✓ 🚀 \u0000 \n \"q\"" },
      ];
      const c = collect(sub.socket, "value");
      for (const data of values) {
        const a = await ack(pub.socket, "publish", { room, event: "value", data });
        assert.equal(a.ok, true, JSON.stringify(a));
      }
      const got = await c.count(values.length);
      assert.deepEqual(
        got.map(([d]) => d),
        values,
      );
      close();
    });

    test("publish without data delivers null (or nothing) as data", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const got = once(sub.socket, "nodata");
      const a = await ack(pub.socket, "publish", { room, event: "nodata" });
      assert.equal(a.ok, true, JSON.stringify(a));
      const [data, meta] = await got;
      assert.ok(data === null || data === undefined, `data is ${JSON.stringify(data)}`);
      assert.equal(meta.room, room);
      close();
    });

    test("offsets grow per room and ids are distinct", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const c = collect(sub.socket, "tick");
      const acks = [];
      for (let i = 0; i < 10; i++) acks.push(await ack(pub.socket, "publish", { room, event: "tick", data: i }));
      for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
      for (let i = 1; i < acks.length; i++) {
        assert.equal(compareOffsets(acks[i - 1].offset, acks[i].offset), -1, `offset ${acks[i].offset} after ${acks[i - 1].offset}`);
      }
      assert.equal(new Set(acks.map((a) => a.id)).size, acks.length, "ids are distinct");
      const got = await c.count(10);
      assert.deepEqual(
        got.map(([, m]) => m.offset),
        acks.map((a) => a.offset),
      );
      close();
    });

    test("offsets of different rooms are independent but each grows", async () => {
      const { socket } = await open(srv, { transports });
      const r1 = unique("room");
      const r2 = unique("room");
      const o1 = [];
      const o2 = [];
      for (let i = 0; i < 3; i++) {
        o1.push((await ack(socket, "publish", { room: r1, event: "e", data: i })).offset);
        o2.push((await ack(socket, "publish", { room: r2, event: "e", data: i })).offset);
      }
      for (const o of [o1, o2]) for (let i = 1; i < o.length; i++) assert.equal(compareOffsets(o[i - 1], o[i]), -1, JSON.stringify(o));
      socket.disconnect();
    });

    test("every subscriber of the room receives the message", async () => {
      const room = unique("room");
      const subs = [];
      for (let i = 0; i < 3; i++) {
        const s = await open(srv, { transports });
        await ack(s.socket, "subscribe", { room });
        subs.push(s);
      }
      const pub = await open(srv, { transports });
      const waits = subs.map((s) => once(s.socket, "fan"));
      const a = await ack(pub.socket, "publish", { room, event: "fan", data: "x" });
      assert.equal(a.ok, true);
      for (const [data, meta] of await Promise.all(waits)) {
        assert.equal(data, "x");
        assert.equal(meta.id, a.id);
      }
      for (const s of [...subs, pub]) s.socket.disconnect();
    });

    test("a publisher need not subscribe to publish", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const got = once(sub.socket, "e");
      assert.equal((await ack(pub.socket, "publish", { room, event: "e", data: 1 })).ok, true);
      await got;
      close();
    });

    test("the publisher does not get its own message unless echo: true", async () => {
      const { room, pub, sub, close } = await pair(transports, { subscribeBoth: true });
      const own = collect(pub.socket, "first");
      const subGot = once(sub.socket, "first");
      const a1 = await ack(pub.socket, "publish", { room, event: "first", data: "no-echo" });
      assert.equal(a1.ok, true);
      await subGot; // it was fanned out
      // A marker with echo from the same publisher: delivery is in publish order, so once
      // the marker is here the first message would already have arrived.
      const marker = once(pub.socket, "marker");
      const a2 = await ack(pub.socket, "publish", { room, event: "marker", data: "echo", echo: true });
      assert.equal(a2.ok, true);
      const [data, meta] = await marker;
      assert.equal(data, "echo");
      assert.equal(meta.from, pub.sub);
      assert.equal(own.items.length, 0, `publisher got its own message without echo: ${JSON.stringify(own.items)}`);
      close();
    });

    test("echo: false behaves like no echo", async () => {
      const { room, pub, close } = await pair(transports, { subscribeBoth: true });
      const own = collect(pub.socket, "first");
      assert.equal((await ack(pub.socket, "publish", { room, event: "first", data: 1, echo: false })).ok, true);
      const marker = once(pub.socket, "marker");
      assert.equal((await ack(pub.socket, "publish", { room, event: "marker", data: 2, echo: true })).ok, true);
      await marker;
      assert.equal(own.items.length, 0);
      close();
    });

    test("another connection of the same user does get the message", async () => {
      const room = unique("room");
      const sub = unique("user");
      const a = await open(srv, { transports, claims: { sub } });
      const b = await open(srv, { transports, claims: { sub } });
      await ack(a.socket, "subscribe", { room });
      await ack(b.socket, "subscribe", { room });
      const got = once(b.socket, "same-user");
      assert.equal((await ack(a.socket, "publish", { room, event: "same-user", data: 1 })).ok, true);
      const [, meta] = await got;
      assert.equal(meta.from, sub);
      a.socket.disconnect();
      b.socket.disconnect();
    });

    test("messages of other rooms are not delivered", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const other = unique("room");
      const stray = collect(sub.socket, "stray");
      assert.equal((await ack(pub.socket, "publish", { room: other, event: "stray", data: 1 })).ok, true);
      const marker = once(sub.socket, "marker");
      assert.equal((await ack(pub.socket, "publish", { room, event: "marker", data: 2 })).ok, true);
      await marker;
      assert.equal(stray.items.length, 0, `got a message of a room not subscribed: ${JSON.stringify(stray.items)}`);
      close();
    });

    test("subscribing twice delivers each message once", async () => {
      const { room, pub, sub, close } = await pair(transports);
      assert.deepEqual(await ack(sub.socket, "subscribe", { room }), { ok: true });
      const c = collect(sub.socket, "m");
      assert.equal((await ack(pub.socket, "publish", { room, event: "m", data: 1 })).ok, true);
      assert.equal((await ack(pub.socket, "publish", { room, event: "m", data: 2 })).ok, true);
      await c.find((d) => d === 2);
      assert.deepEqual(
        c.items.map(([d]) => d),
        [1, 2],
      );
      close();
    });

    test("after unsubscribe nothing more is delivered", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const witness = await open(srv, { transports });
      await ack(witness.socket, "subscribe", { room });
      assert.deepEqual(await ack(sub.socket, "unsubscribe", { room }), { ok: true });

      const c = collect(sub.socket, "u");
      const w = collect(witness.socket, "u");
      assert.equal((await ack(pub.socket, "publish", { room, event: "u", data: "while-away" })).ok, true);
      await w.find((d) => d === "while-away");
      // Back in: the next message arrives, and nothing published while away came before it.
      assert.deepEqual(await ack(sub.socket, "subscribe", { room }), { ok: true });
      assert.equal((await ack(pub.socket, "publish", { room, event: "u", data: "back" })).ok, true);
      await c.find((d) => d === "back");
      assert.deepEqual(
        c.items.map(([d]) => d),
        ["back"],
      );
      witness.socket.disconnect();
      close();
    });

    test("an unknown event gets an invalid_event error ack", async () => {
      const { socket } = await open(srv, { transports });
      const a = await ack(socket, "no-such-event", { room: "x" });
      assert.equal(errorCode(a), "invalid_event");
      // and the socket still works
      assert.deepEqual(await ack(socket, "subscribe", { room: unique("room") }), { ok: true });
      socket.disconnect();
    });

    test("events sent without an ack callback are carried out", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const got = once(sub.socket, "noack");
      pub.socket.emit("publish", { room, event: "noack", data: 7 });
      const [data] = await got;
      assert.equal(data, 7);
      close();
    });

    test("200 rapid publishes without awaiting acks keep publish order", async () => {
      const { room, pub, sub, close } = await pair(transports);
      const c = collect(sub.socket, "seq");
      const N = 200;
      const pending = [];
      for (let i = 0; i < N; i++) pending.push(ack(pub.socket, "publish", { room, event: "seq", data: i }, 15000));
      const acks = await Promise.all(pending);
      // The default policy allows 50/s with a burst of 50, so some are rate limited; the
      // accepted ones must arrive in publish order, each once, and nothing else.
      const accepted = [];
      acks.forEach((a, i) => {
        if (a.ok) accepted.push({ i, a });
        else assert.equal(errorCode(a), "rate_limited", JSON.stringify(a));
      });
      assert.ok(accepted.length >= 50, `at least the burst of 50 was accepted, got ${accepted.length}`);
      for (let k = 1; k < accepted.length; k++) {
        assert.equal(compareOffsets(accepted[k - 1].a.offset, accepted[k].a.offset), -1, "acked offsets follow publish order");
      }
      const got = await c.count(accepted.length, 15000);
      assert.deepEqual(
        got.map(([d]) => d),
        accepted.map(({ i }) => i),
        "delivered in publish order",
      );
      assert.deepEqual(
        got.map(([, m]) => m.offset),
        accepted.map(({ a }) => a.offset),
      );
      // Nothing extra arrives after (a marker from the same publisher closes the stream).
      const marker = once(sub.socket, "end");
      let m;
      for (let tries = 0; tries < 100; tries++) {
        m = await ack(pub.socket, "publish", { room, event: "end", data: null });
        if (m.ok) break;
        await new Promise((r) => setTimeout(r, 50)); // wait for the bucket to refill
      }
      assert.equal(m.ok, true);
      await marker;
      assert.equal(c.items.length, accepted.length);
      close();
    });
  });
}

test("a websocket publisher reaches a polling subscriber and back", async () => {
  const room = unique("room");
  const ws = await open(srv, { transports: ["websocket"] });
  const poll = await open(srv, { transports: ["polling"] });
  await ack(ws.socket, "subscribe", { room });
  await ack(poll.socket, "subscribe", { room });
  const g1 = once(poll.socket, "x");
  assert.equal((await ack(ws.socket, "publish", { room, event: "x", data: "to-poll" })).ok, true);
  assert.equal((await g1)[0], "to-poll");
  const g2 = once(ws.socket, "x");
  assert.equal((await ack(poll.socket, "publish", { room, event: "x", data: "to-ws" })).ok, true);
  assert.equal((await g2)[0], "to-ws");
  ws.socket.disconnect();
  poll.socket.disconnect();
});

describe("stats", () => {
  /** The demo tenant's `stats` through the admin API. */
  async function stats() {
    const r = await fetch(`${srv.adminBase}/tenants/demo/stats`, { headers: { Authorization: `Bearer ${srv.adminToken}` } });
    assert.equal(r.status, 200);
    return r.json();
  }

  test("messages_out counts deliveries from a publisher that is not in the room", async () => {
    const { room, pub, sub, close } = await pair(["websocket"]);
    const before = (await stats()).messages_out;
    const got = once(sub.socket, "note");
    assert.equal((await ack(pub.socket, "publish", { room, event: "note", data: 1 })).ok, true);
    await got;
    // Counters reach the store once a second: poll until the delivery shows, or give up.
    const deadline = Date.now() + WAIT_MS;
    let now = before;
    while (now < before + 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      now = (await stats()).messages_out;
    }
    assert.ok(now >= before + 1, `messages_out grew from ${before} to ${now}`);
    close();
  });
});

