// SPEC §3.3: single-use tickets from `POST /v1/tickets` on the edge.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { TRANSPORTS, ack, connected, errorCode, once, refused, startServer, unique } from "../lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

async function issue(token, headers = {}) {
  const res = await fetch(`${srv.edgeBase}/v1/tickets`, {
    method: "POST",
    headers: token === undefined ? headers : { Authorization: `Bearer ${token}`, ...headers },
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

async function ticketFor(claims = {}) {
  const sub = claims.sub ?? unique("tix");
  const r = await issue(srv.token({ ...claims, sub }));
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { ticket: r.body.ticket, sub };
}

test("POST /v1/tickets answers 201 {ticket, expires_in}", async () => {
  const r = await issue(srv.token());
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.match(r.headers.get("content-type") || "", /application\/json/);
  assert.deepEqual(Object.keys(r.body).sort(), ["expires_in", "ticket"]);
  assert.equal(typeof r.body.ticket, "string");
  assert.ok(r.body.ticket.length >= 16, "a ticket is long enough not to be guessed");
  assert.equal(r.body.expires_in, 30, "ticket_ttl_seconds of the default policy");
  const r2 = await issue(srv.token());
  assert.notEqual(r2.body.ticket, r.body.ticket, "every ticket is new");
});

test("POST /v1/tickets without a token is refused with missing_credentials", async () => {
  const r = await issue(undefined);
  assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
  assert.equal(r.body.code, "missing_credentials", JSON.stringify(r.body));
});

for (const [what, token, code] of [
  ["a garbage token", "garbage", "invalid_token"],
  ["a token with the wrong secret", null, "invalid_token"],
  ["an expired token", "expired", "token_expired"],
]) {
  test(`POST /v1/tickets with ${what} is refused with ${code}`, async () => {
    let t = token;
    if (token === null) t = srv.token({}, { key: "wrong-secret-wrong-secret-wrong" });
    if (token === "expired") t = srv.token({ exp: Math.floor(Date.now() / 1000) - 5 });
    const r = await issue(t);
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
    assert.equal(r.body.code, code, JSON.stringify(r.body));
    assert.ok(!JSON.stringify(r.body).includes(t.slice(0, 20)) || t === "garbage", "the token is not echoed");
  });
}

for (const transports of TRANSPORTS) {
  describe(`tickets over ${transports[0]}`, () => {
    test("a ticket in the auth payload connects as the token's user", async () => {
      const { ticket, sub } = await ticketFor({ meta: { via: "ticket" } });
      const s = srv.connect({ transports, auth: { ticket } });
      const session = await connected(s);
      assert.equal(session.recovered, false);
      const room = unique("room");
      assert.deepEqual(await ack(s, "subscribe", { room }), { ok: true });
      const p = await ack(s, "presence", { room });
      assert.deepEqual(p.members, [{ sub, meta: { via: "ticket" }, connections: 1 }]);
      const got = once(s, "t");
      assert.equal((await ack(s, "publish", { room, event: "t", data: 1, echo: true })).ok, true);
      const [, meta] = await got;
      assert.equal(meta.from, sub);
      s.disconnect();
    });

    test("a ticket in the query (?ticket=) connects", async () => {
      const { ticket } = await ticketFor();
      const s = srv.connect({ transports, query: { ticket } });
      await connected(s);
      s.disconnect();
    });

    test("a ticket works once: a second use is ticket_invalid", async () => {
      const { ticket } = await ticketFor();
      const s = srv.connect({ transports, auth: { ticket } });
      await connected(s);
      const err = await refused(srv.connect({ transports, auth: { ticket } }));
      assert.equal(err.message, "ticket_invalid");
      const err2 = await refused(srv.connect({ transports, query: { ticket } }));
      assert.equal(err2.message, "ticket_invalid");
      s.disconnect();
    });

    test("a ticket used in the query cannot be used again in auth", async () => {
      const { ticket } = await ticketFor();
      const s = srv.connect({ transports, query: { ticket } });
      await connected(s);
      const err = await refused(srv.connect({ transports, auth: { ticket } }));
      assert.equal(err.message, "ticket_invalid");
      s.disconnect();
    });

    test("two simultaneous handshakes with one ticket: exactly one connects", async () => {
      const { ticket } = await ticketFor();
      const a = srv.connect({ transports, auth: { ticket } });
      const b = srv.connect({ transports, auth: { ticket } });
      const outcome = (s) =>
        new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error("no answer")), 5000);
          s.on("session", () => (clearTimeout(t), res("ok")));
          s.on("connect_error", (e) => (clearTimeout(t), res(e.message)));
        });
      const results = (await Promise.all([outcome(a), outcome(b)])).sort();
      assert.deepEqual(results, ["ok", "ticket_invalid"]);
      a.disconnect();
      b.disconnect();
    });

    for (const [what, ticket] of [
      ["a bogus ticket", "0".repeat(64)],
      ["a short bogus ticket", "nope"],
      ["a huge ticket", "t".repeat(10000)],
    ]) {
      test(`${what} is refused with ticket_invalid`, async () => {
        const err = await refused(srv.connect({ transports, auth: { ticket } }));
        assert.equal(err.message, "ticket_invalid");
      });
    }

    test("a bogus ticket in the query is refused with ticket_invalid", async () => {
      const err = await refused(srv.connect({ transports, query: { ticket: "f".repeat(64) } }));
      assert.equal(err.message, "ticket_invalid");
    });

    test("a ticket carries the token's caps", async () => {
      const { ticket } = await ticketFor({ caps: { "t:*": ["subscribe"] } });
      const s = srv.connect({ transports, auth: { ticket } });
      await connected(s);
      assert.deepEqual(await ack(s, "subscribe", { room: "t:1" }), { ok: true });
      assert.equal(errorCode(await ack(s, "subscribe", { room: "u:1" })), "forbidden");
      assert.equal(errorCode(await ack(s, "publish", { room: "t:1", event: "e", data: 1 })), "forbidden");
      s.disconnect();
    });

    test("a ticket issued for one tenant is unknown to another namespace", async () => {
      const { ticket } = await ticketFor();
      const err = await refused(srv.connect({ transports, ns: "/nope", auth: { ticket } }));
      assert.equal(err.message, "unknown_tenant");
      // and the refusal did not consume it
      const s = srv.connect({ transports, auth: { ticket } });
      await connected(s);
      s.disconnect();
    });
  });
}

test("POST /v1/tickets is CORS-enabled for the tenant's origins (allowed_origins [\"*\"])", async () => {
  const origin = "https://app.example.com";
  const r = await issue(srv.token(), { Origin: origin });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.headers.get("access-control-allow-origin"), origin);
});

test("a CORS preflight for POST /v1/tickets allows the authorization header", async () => {
  const res = await fetch(`${srv.edgeBase}/v1/tickets`, {
    method: "OPTIONS",
    headers: {
      Origin: "https://app.example.com",
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "authorization",
    },
    signal: AbortSignal.timeout(5000),
  });
  assert.ok(res.status === 200 || res.status === 204, `status ${res.status}`);
  assert.equal(res.headers.get("access-control-allow-origin"), "https://app.example.com");
  assert.match(res.headers.get("access-control-allow-methods") || "", /POST/);
  assert.match((res.headers.get("access-control-allow-headers") || "").toLowerCase(), /authorization/);
});
