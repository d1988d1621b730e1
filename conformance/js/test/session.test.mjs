// SPEC §3.5 `refresh`, §3.6 `session_end`: a token is re-checked for the life of the
// connection.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { TRANSPORTS, ack, collect, connected, errorCode, nowS, once, open, sleep, startServer, unique } from "../lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

/** Waits (with a deadline) until the socket gets `session_end` and then disconnects. */
async function expectEnded(socket, code, timeoutMs) {
  const disc = once(socket, "disconnect", timeoutMs);
  const [end] = await once(socket, "session_end", timeoutMs);
  assert.deepEqual(Object.keys(end).sort(), ["code", "message"]);
  assert.equal(end.code, code);
  assert.equal(typeof end.message, "string");
  const [reason] = await disc;
  assert.equal(reason, "io server disconnect", "the server ended it");
  assert.equal(socket.connected, false);
}

for (const transports of TRANSPORTS) {
  describe(`session over ${transports[0]}`, { concurrency: true }, () => {
    test("refresh with a new token of the same user answers {ok, exp}", async () => {
      const sub = unique("user");
      const { socket } = await open(srv, { transports, claims: { sub } });
      const exp = nowS() + 3600;
      const a = await ack(socket, "refresh", { token: srv.token({ sub, exp }) });
      assert.deepEqual(a, { ok: true, exp });
      socket.disconnect();
    });

    test("refresh with another user's token is invalid_token", async () => {
      const { socket } = await open(srv, { transports });
      assert.equal(errorCode(await ack(socket, "refresh", { token: srv.token({ sub: unique("other") }) })), "invalid_token");
      socket.disconnect();
    });

    for (const [what, payload, code] of [
      ["a garbage token", { token: "garbage" }, "invalid_token"],
      ["no token", {}, "invalid_token"],
      ["a non-object payload", "token", "invalid_token"],
      ["a token with the wrong secret", "wrong-secret", "invalid_token"],
      ["a token for another tenant", "other-aud", "invalid_token"],
      ["an expired token", "expired", "token_expired"],
    ]) {
      test(`refresh with ${what} is ${code}, and the session goes on`, async () => {
        const sub = unique("user");
        const { socket } = await open(srv, { transports, claims: { sub } });
        let p = payload;
        if (payload === "wrong-secret") p = { token: srv.token({ sub }, { key: "wrong-secret-wrong-secret-wrong" }) };
        if (payload === "other-aud") p = { token: srv.token({ sub, aud: "other" }) };
        if (payload === "expired") p = { token: srv.token({ sub, exp: nowS() - 5 }) };
        assert.equal(errorCode(await ack(socket, "refresh", p)), code);
        assert.deepEqual(await ack(socket, "subscribe", { room: unique("room") }), { ok: true });
        socket.disconnect();
      });
    }

    test("a token reaching exp ends the session with session_end token_expired, then a disconnect", async () => {
      const s = srv.connect({ transports, auth: { token: srv.token({ exp: nowS() + 2 }) } });
      await connected(s);
      await expectEnded(s, "token_expired", 6000);
    });

    test("a ticket's session also ends at its token's exp", async () => {
      const res = await fetch(`${srv.edgeBase}/v1/tickets`, {
        method: "POST",
        headers: { Authorization: `Bearer ${srv.token({ exp: nowS() + 2 })}` },
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(res.status, 201);
      const { ticket } = await res.json();
      const s = srv.connect({ transports, auth: { ticket } });
      await connected(s);
      await expectEnded(s, "token_expired", 6000);
    });

    test("refresh before exp keeps the session alive past the old exp", async () => {
      const sub = unique("user");
      const oldExp = nowS() + 2;
      const s = srv.connect({ transports, auth: { token: srv.token({ sub, exp: oldExp }) } });
      await connected(s);
      const ends = collect(s, "session_end");
      const newExp = nowS() + 600;
      assert.deepEqual(await ack(s, "refresh", { token: srv.token({ sub, exp: newExp }) }), { ok: true, exp: newExp });
      // Let the old exp pass, plus more than the server's 250 ms expiry tick.
      const waitMs = oldExp * 1000 + 1500 - Date.now();
      if (waitMs > 0) await sleep(waitMs);
      // Still connected and working: a round trip after the old exp proves it.
      const room = unique("room");
      assert.deepEqual(await ack(s, "subscribe", { room }), { ok: true });
      const got = once(s, "alive");
      assert.equal((await ack(s, "publish", { room, event: "alive", data: 1, echo: true })).ok, true);
      await got;
      assert.equal(s.connected, true);
      assert.equal(ends.items.length, 0, `session_end after a refresh: ${JSON.stringify(ends.items)}`);
      s.disconnect();
    });

    test("a refresh to a sooner exp ends the session at the new exp", async () => {
      const sub = unique("user");
      const s = srv.connect({ transports, auth: { token: srv.token({ sub, exp: nowS() + 600 }) } });
      await connected(s);
      const exp = nowS() + 2;
      assert.deepEqual(await ack(s, "refresh", { token: srv.token({ sub, exp }) }), { ok: true, exp });
      await expectEnded(s, "token_expired", 6000);
    });

    test("refreshed caps apply to later events", async () => {
      const sub = unique("user");
      const room = unique("room");
      const { socket } = await open(srv, { transports, claims: { sub, caps: { [room]: ["subscribe"] } } });
      assert.equal(errorCode(await ack(socket, "publish", { room, event: "e", data: 1 })), "forbidden");
      const a = await ack(socket, "refresh", { token: srv.token({ sub, caps: { [room]: ["subscribe", "publish"] } }) });
      assert.equal(a.ok, true);
      assert.equal((await ack(socket, "publish", { room, event: "e", data: 1 })).ok, true);
      socket.disconnect();
    });
  });
}
