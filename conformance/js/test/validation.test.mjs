// SPEC §3.5: invalid_room, invalid_event, payload_too_large, rate_limited, and the
// error ack's shape.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { TRANSPORTS, ack, collect, errorCode, once, open, sleep, startServer, unique } from "../lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

const BAD_ROOMS = [
  ["an empty room", ""],
  ["a 201-byte room", "r".repeat(201)],
  ["a room with a space", "a b"],
  ["a room with #", "a#b"],
  ["a room with *", "chat:*"],
  ["a room with ~", "~u:someone"],
  ["a room with a non-ASCII letter", "café"],
  ["a room with 200 bytes of multi-byte characters", "é".repeat(100) + "x"],
  ["a room with a newline", "a\nb"],
  ["a room with a NUL", "a\u0000b"],
];

const BAD_PAYLOADS = [
  ["a payload without room", {}],
  ["a payload with room null", { room: null }],
  ["a payload with a numeric room", { room: 42 }],
  ["a payload with an array room", { room: ["a"] }],
  ["a string payload", "room"],
  ["a number payload", 7],
  ["a null payload", null],
  ["an array payload", [{ room: "a" }]],
  ["a boolean payload", true],
];

for (const transports of TRANSPORTS) {
  describe(`validation over ${transports[0]}`, () => {
    let s;
    let sock;
    before(async () => {
      s = await open(srv, { transports });
      sock = s.socket;
    });
    after(() => sock?.disconnect());

    test("room names of 1 and 200 bytes of every allowed character are valid", async () => {
      for (const room of ["a", "r".repeat(200), "AZaz09_-:.@/=", "chat:general/2024-01-01@eu=1.5"]) {
        assert.deepEqual(await ack(sock, "subscribe", { room }), { ok: true }, room);
        assert.equal((await ack(sock, "publish", { room, event: "e", data: 1 })).ok, true, room);
        assert.equal((await ack(sock, "presence", { room })).ok, true, room);
        assert.deepEqual(await ack(sock, "unsubscribe", { room }), { ok: true }, room);
      }
    });

    for (const [what, room] of BAD_ROOMS) {
      test(`${what} is invalid_room for subscribe, unsubscribe, publish and presence`, async () => {
        for (const [ev, payload] of [
          ["subscribe", { room }],
          ["unsubscribe", { room }],
          ["publish", { room, event: "e", data: 1 }],
          ["presence", { room }],
        ]) {
          assert.equal(errorCode(await ack(sock, ev, payload)), "invalid_room", `${ev} ${JSON.stringify(room)}`);
        }
      });
    }

    for (const [what, payload] of BAD_PAYLOADS) {
      test(`${what} is invalid_room`, async () => {
        for (const ev of ["subscribe", "unsubscribe", "publish", "presence"]) {
          assert.equal(errorCode(await ack(sock, ev, payload)), "invalid_room", `${ev} ${JSON.stringify(payload)}`);
        }
      });
    }

    test("no payload at all (only the ack callback) is invalid_room", async () => {
      for (const ev of ["subscribe", "unsubscribe", "publish", "presence"]) {
        const a = await sock.timeout(5000).emitWithAck(ev);
        assert.equal(errorCode(a), "invalid_room", ev);
      }
    });

    test("the error ack is {ok: false, error: {code, message}} and nothing else", async () => {
      const a = await ack(sock, "subscribe", { room: "" });
      assert.deepEqual(Object.keys(a).sort(), ["error", "ok"]);
      assert.deepEqual(Object.keys(a.error).sort(), ["code", "message"]);
      assert.ok(a.error.message.length > 0, "message is not empty");
    });

    test("event names of 1 and 128 bytes are valid", async () => {
      for (const event of ["e", "x".repeat(128), "chat.message", "presence:update", "with space", "ünï"]) {
        const a = await ack(sock, "publish", { room: unique("room"), event, data: 1 });
        assert.equal(a.ok, true, `${event}: ${JSON.stringify(a)}`);
      }
    });

    const BAD_EVENTS = [
      ["reserved connect", "connect"],
      ["reserved connect_error", "connect_error"],
      ["reserved disconnect", "disconnect"],
      ["reserved disconnecting", "disconnecting"],
      ["reserved newListener", "newListener"],
      ["reserved removeListener", "removeListener"],
      ["reserved session", "session"],
      ["reserved session_end", "session_end"],
      ["reserved presence:join", "presence:join"],
      ["reserved presence:leave", "presence:leave"],
      ["129 bytes", "x".repeat(129)],
      ["65 two-byte characters (130 bytes)", "é".repeat(65)],
      ["empty", ""],
      ["a number", 42],
      ["null", null],
      ["an object", { name: "e" }],
    ];
    for (const [what, event] of BAD_EVENTS) {
      test(`an event name that is ${what} is invalid_event`, async () => {
        const a = await ack(sock, "publish", { room: unique("room"), event, data: 1 });
        assert.equal(errorCode(a), "invalid_event", JSON.stringify(event));
      });
    }

    test("a publish without event is invalid_event", async () => {
      assert.equal(errorCode(await ack(sock, "publish", { room: unique("room"), data: 1 })), "invalid_event");
    });

    test("an invalid event is not delivered", async () => {
      const room = unique("room");
      const listener = await open(srv, { transports });
      await ack(listener.socket, "subscribe", { room });
      const c = collect(listener.socket, "connect");
      const d = collect(listener.socket, "session");
      assert.equal(errorCode(await ack(sock, "publish", { room, event: "session", data: { id: "forged", recovered: true } })), "invalid_event");
      const marker = once(listener.socket, "marker");
      assert.equal((await ack(sock, "publish", { room, event: "marker", data: 1 })).ok, true);
      await marker;
      assert.equal(c.items.length + d.items.length, 0);
      listener.socket.disconnect();
    });

    test("data of exactly 65536 serialized bytes is accepted and delivered whole", async () => {
      const room = unique("room");
      await ack(sock, "subscribe", { room });
      const data = "x".repeat(65534); // + 2 quotes = 65536 bytes of JSON
      const got = once(sock, "big");
      const a = await ack(sock, "publish", { room, event: "big", data, echo: true });
      assert.equal(a.ok, true, JSON.stringify(a).slice(0, 200));
      const [d] = await got;
      assert.equal(d, data);
      await ack(sock, "unsubscribe", { room });
    });

    test("data over 65536 serialized bytes is payload_too_large", async () => {
      for (const data of [
        "x".repeat(65535), // 65537 bytes serialized
        { text: "y".repeat(70000) },
        Array.from({ length: 20000 }, (_, i) => i),
        "é".repeat(40000), // 80002 bytes in UTF-8
      ]) {
        const a = await ack(sock, "publish", { room: unique("room"), event: "e", data });
        assert.equal(errorCode(a), "payload_too_large");
      }
    });

    test("a too large message is not delivered", async () => {
      const room = unique("room");
      await ack(sock, "subscribe", { room });
      const c = collect(sock, "big");
      assert.equal(errorCode(await ack(sock, "publish", { room, event: "big", data: "z".repeat(70000), echo: true })), "payload_too_large");
      const marker = once(sock, "marker");
      assert.equal((await ack(sock, "publish", { room, event: "marker", data: 1, echo: true })).ok, true);
      await marker;
      assert.equal(c.items.length, 0);
      await ack(sock, "unsubscribe", { room });
    });

    test("publishing 200 times at once hits rate_limited (50/s, burst 50), and rate-limited messages are not delivered", async () => {
      const { socket } = await open(srv, { transports });
      const room = unique("room");
      await ack(socket, "subscribe", { room });
      const c = collect(socket, "flood");
      const acks = await Promise.all(
        Array.from({ length: 200 }, (_, i) => ack(socket, "publish", { room, event: "flood", data: i, echo: true }, 15000)),
      );
      const ok = acks.filter((a) => a.ok);
      const limited = acks.filter((a) => !a.ok);
      for (const a of limited) assert.equal(errorCode(a), "rate_limited");
      assert.ok(limited.length >= 1, "at least one rate_limited");
      assert.ok(ok.length >= 50, `the burst of 50 passes (got ${ok.length})`);
      assert.ok(ok.length < 200, `not all 200 pass (got ${ok.length})`);
      const got = await c.count(ok.length, 15000);
      const okIdx = acks.map((a, i) => (a.ok ? i : -1)).filter((i) => i >= 0);
      assert.deepEqual(
        got.map(([d]) => d),
        okIdx,
      );
      socket.disconnect();
    });

    test("the rate limit refills with time and is per connection", async () => {
      const { socket } = await open(srv, { transports });
      const room = unique("room");
      const acks = await Promise.all(Array.from({ length: 120 }, (_, i) => ack(socket, "publish", { room, event: "e", data: i }, 15000)));
      assert.ok(acks.some((a) => !a.ok && a.error.code === "rate_limited"));
      // Another connection (even of another user) has its own budget.
      const other = await open(srv, { transports });
      assert.equal((await ack(other.socket, "publish", { room, event: "e", data: 0 })).ok, true);
      other.socket.disconnect();
      // After a second, the bucket has refilled.
      await sleep(1100);
      assert.equal((await ack(socket, "publish", { room, event: "e", data: "again" })).ok, true);
      socket.disconnect();
    });

    test("subscribe, presence and unsubscribe are not publish-rate limited", async () => {
      const { socket } = await open(srv, { transports });
      const rooms = Array.from({ length: 120 }, () => unique("room"));
      const acks = await Promise.all(rooms.map((room) => ack(socket, "subscribe", { room }, 15000)));
      for (const a of acks) assert.deepEqual(a, { ok: true });
      const p = await Promise.all(rooms.map((room) => ack(socket, "presence", { room }, 15000)));
      for (const a of p) assert.equal(a.ok, true);
      socket.disconnect();
    });
  });
}
