// SPEC §3.2 `caps` claim and §3.5 `forbidden`: rights per room pattern.

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

for (const transports of TRANSPORTS) {
  describe(`rights over ${transports[0]}`, () => {
    test('caps {"chat:*": ["subscribe"]}: subscribe inside, nothing else', async () => {
      const { socket } = await open(srv, { transports, claims: { caps: { "chat:*": ["subscribe"] } } });
      assert.deepEqual(await ack(socket, "subscribe", { room: "chat:1" }), { ok: true });
      assert.deepEqual(await ack(socket, "subscribe", { room: "chat:" }), { ok: true }, "the prefix itself matches");
      assert.deepEqual(await ack(socket, "subscribe", { room: "chat:a/b/c" }), { ok: true });
      assert.equal(errorCode(await ack(socket, "subscribe", { room: "other" })), "forbidden");
      assert.equal(errorCode(await ack(socket, "subscribe", { room: "chat" })), "forbidden", "`chat` does not start with `chat:`");
      assert.equal(errorCode(await ack(socket, "subscribe", { room: "xchat:1" })), "forbidden");
      assert.equal(errorCode(await ack(socket, "publish", { room: "chat:1", event: "e", data: 1 })), "forbidden");
      assert.equal(errorCode(await ack(socket, "presence", { room: "chat:1" })), "forbidden");
      socket.disconnect();
    });

    test("a forbidden publish reaches nobody", async () => {
      const room = `chat:${unique("r")}`;
      const listener = await open(srv, { transports });
      await ack(listener.socket, "subscribe", { room });
      const c = collect(listener.socket, "nope");
      const { socket } = await open(srv, { transports, claims: { caps: { "chat:*": ["subscribe"] } } });
      assert.equal(errorCode(await ack(socket, "publish", { room, event: "nope", data: 1 })), "forbidden");
      // A later message of an allowed publisher in the same room arrives first and alone.
      const marker = once(listener.socket, "marker");
      const ok = await open(srv, { transports });
      assert.equal((await ack(ok.socket, "publish", { room, event: "marker", data: 1 })).ok, true);
      await marker;
      assert.equal(c.items.length, 0);
      for (const s of [listener.socket, socket, ok.socket]) s.disconnect();
    });

    test("a forbidden subscribe delivers nothing", async () => {
      const room = unique("secret");
      const { socket } = await open(srv, { transports, claims: { caps: { "public:*": ["subscribe"] } } });
      assert.equal(errorCode(await ack(socket, "subscribe", { room })), "forbidden");
      const c = collect(socket, "leak");
      const pub = await open(srv, { transports });
      assert.equal((await ack(pub.socket, "publish", { room, event: "leak", data: 1 })).ok, true);
      // Marker on a room it may subscribe to, from the same publisher.
      const pubRoom = `public:${unique("r")}`;
      assert.deepEqual(await ack(socket, "subscribe", { room: pubRoom }), { ok: true });
      const marker = once(socket, "marker");
      assert.equal((await ack(pub.socket, "publish", { room: pubRoom, event: "marker", data: 1 })).ok, true);
      await marker;
      assert.equal(c.items.length, 0);
      assert.equal(errorCode(await ack(socket, "presence", { room })), "forbidden");
      socket.disconnect();
      pub.socket.disconnect();
    });

    test("no caps claim: the default policy's default_caps {} forbids everything", async () => {
      const { socket } = await open(srv, { transports, claims: { caps: undefined } });
      const room = unique("room");
      assert.equal(errorCode(await ack(socket, "subscribe", { room })), "forbidden");
      assert.equal(errorCode(await ack(socket, "publish", { room, event: "e", data: 1 })), "forbidden");
      assert.equal(errorCode(await ack(socket, "presence", { room })), "forbidden");
      socket.disconnect();
    });

    test("an empty caps object forbids everything", async () => {
      const { socket } = await open(srv, { transports, claims: { caps: {} } });
      const room = unique("room");
      assert.equal(errorCode(await ack(socket, "subscribe", { room })), "forbidden");
      assert.equal(errorCode(await ack(socket, "publish", { room, event: "e", data: 1 })), "forbidden");
      assert.equal(errorCode(await ack(socket, "presence", { room })), "forbidden");
      socket.disconnect();
    });

    test("an exact room pattern matches that room only", async () => {
      const { socket } = await open(srv, { transports, claims: { caps: { lobby: ["publish", "subscribe"] } } });
      assert.equal((await ack(socket, "publish", { room: "lobby", event: "e", data: 1 })).ok, true);
      assert.deepEqual(await ack(socket, "subscribe", { room: "lobby" }), { ok: true });
      assert.equal(errorCode(await ack(socket, "publish", { room: "lobby2", event: "e", data: 1 })), "forbidden");
      assert.equal(errorCode(await ack(socket, "subscribe", { room: "lobb" })), "forbidden");
      assert.equal(errorCode(await ack(socket, "presence", { room: "lobby" })), "forbidden");
      socket.disconnect();
    });

    test('"*" matches every room, with just the rights listed', async () => {
      const { socket } = await open(srv, { transports, claims: { caps: { "*": ["publish"] } } });
      for (const room of ["a", "chat:1", "x/y/z", unique("room")]) {
        assert.equal((await ack(socket, "publish", { room, event: "e", data: 1 })).ok, true, room);
        assert.equal(errorCode(await ack(socket, "subscribe", { room })), "forbidden", room);
      }
      socket.disconnect();
    });

    test("rights of several patterns combine", async () => {
      const { socket } = await open(srv, {
        transports,
        claims: { caps: { "team:*": ["subscribe", "presence"], "team:announce": ["publish"] } },
      });
      assert.deepEqual(await ack(socket, "subscribe", { room: "team:announce" }), { ok: true });
      assert.equal((await ack(socket, "publish", { room: "team:announce", event: "e", data: 1 })).ok, true);
      assert.equal((await ack(socket, "presence", { room: "team:x" })).ok, true);
      assert.equal(errorCode(await ack(socket, "publish", { room: "team:x", event: "e", data: 1 })), "forbidden");
      socket.disconnect();
    });

    test("unsubscribe needs no right", async () => {
      const { socket } = await open(srv, { transports, claims: { caps: {} } });
      assert.deepEqual(await ack(socket, "unsubscribe", { room: unique("room") }), { ok: true });
      socket.disconnect();
    });

    test("malformed caps in a token refuse the handshake with invalid_token", async () => {
      for (const caps of [{ room: ["fly"] }, { room: "subscribe" }, ["subscribe"], "all"]) {
        const s = srv.connect({ transports, auth: { token: srv.token({ caps }) } });
        const err = await new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error("no answer")), 5000);
          s.on("connect", () => (clearTimeout(t), s.disconnect(), res(null)));
          s.on("connect_error", (e) => (clearTimeout(t), res(e)));
        });
        assert.ok(err, `caps ${JSON.stringify(caps)} was accepted`);
        assert.equal(err.message, "invalid_token", JSON.stringify(caps));
      }
    });
  });
}
