// Secrets never reach logs, at any level (SPEC §2, issue 11): every role runs at
// SWITCHBOARD_LOG=trace against real Redis and NATS while normal and hostile handshakes
// carry credentials in every place a client can put them, and the admin API mints keys,
// API keys, tokens and tickets. Then no token, ticket, secret, API key, admin token or
// cookie value appears anywhere in what the processes printed.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import jwt from "jsonwebtoken";

import { Cluster } from "../lib/cluster.mjs";
import { connected, nowS, once, refused, unique } from "../lib/server.mjs";

const APP = "http://app.example";
let c;
before(async () => {
  c = await new Cluster().edges(1).withEnv({ SWITCHBOARD_LOG: "trace", KEEP_ALL_LOGS: "1" }).start();
});
after(async () => {
  await c?.stop();
});

describe("secrets at SWITCHBOARD_LOG=trace", () => {
  it("no credential appears in any log line", async () => {
    const secrets = [c.adminToken];
    const id = unique("t").toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 60);
    const policy = { allowed_origins: [APP], credential_sources: ["auth", "header", "ticket", "cookie"] };
    assert.equal((await c.api("POST", "/tenants", { id, policy })).status, 201);
    const key = await c.api("POST", `/tenants/${id}/keys`, { alg: "HS256" });
    assert.equal(key.status, 201);
    secrets.push(key.body.secret);
    const apiKey = await c.api("POST", `/tenants/${id}/api-keys`, { name: "backend" });
    assert.equal(apiKey.status, 201);
    secrets.push(apiKey.body.key);
    const minted = await c.api("POST", `/tenants/${id}/tokens`, { sub: "minted" }, apiKey.body.key);
    assert.equal(minted.status, 201);
    secrets.push(minted.body.token);
    const token = (sub) => {
      const t = jwt.sign({ aud: id, sub, exp: nowS() + 600, caps: { "*": ["subscribe", "publish"] } }, key.body.secret, {
        algorithm: "HS256",
        header: { kid: key.body.kid },
        noTimestamp: true,
      });
      secrets.push(t);
      return t;
    };
    const t = { id };
    const edge = c.edge(0).base;

    // Accepted: auth payload (both transports), header, cookie from the allowed origin.
    for (const transports of [["websocket"], ["polling"]]) {
      await connected(c.connect(0, t, { transports, auth: { token: token(unique("u")) } }));
      await connected(c.connect(0, t, { transports, extraHeaders: { Authorization: `Bearer ${token(unique("u"))}` } }));
      await connected(c.connect(0, t, { transports, extraHeaders: { Cookie: `sb_token=${token(unique("u"))}`, Origin: APP } }));
    }
    // Tickets: from the admin API and from the edge, used through auth and the query.
    const adminTicket = await c.api("POST", `/tenants/${id}/tickets`, { sub: "tk" }, apiKey.body.key);
    assert.equal(adminTicket.status, 201);
    secrets.push(adminTicket.body.ticket);
    await connected(c.connect(0, t, { auth: { ticket: adminTicket.body.ticket } }));
    const edgeTicket = await (await fetch(`${edge}/v1/tickets`, { method: "POST", headers: { authorization: `Bearer ${token("tk2")}` } })).json();
    secrets.push(edgeTicket.ticket);
    await connected(c.connect(0, t, { transports: ["polling"], query: { ticket: edgeTicket.ticket } }));

    // Refused: a query token, a cookie from a foreign origin, a forged token, a used
    // ticket, junk in every field.
    const codes = [];
    codes.push((await refused(c.connect(0, t, { query: { token: token("q") } }))).message);
    codes.push((await refused(c.connect(0, t, { extraHeaders: { Cookie: `sb_token=${token("x")}`, Origin: "http://evil.example" } }))).message);
    const forged = jwt.sign({ aud: id, sub: "f", exp: nowS() + 60 }, "not-the-secret-not-the-secret!!", { algorithm: "HS256", noTimestamp: true });
    secrets.push(forged);
    codes.push((await refused(c.connect(0, t, { auth: { token: forged } }))).message);
    codes.push((await refused(c.connect(0, t, { auth: { ticket: adminTicket.body.ticket } }))).message);
    const junk = `junk-${"A".repeat(40)}-secretish`;
    secrets.push(junk);
    codes.push((await refused(c.connect(0, t, { auth: { token: junk, ticket: junk }, extraHeaders: { Authorization: `Bearer ${junk}` } }))).message);
    assert.deepEqual(codes, ["query_token_disabled", "origin_not_allowed", "invalid_token", "ticket_invalid", "invalid_token"]);
    // A revocation and a kick travel the bus with the admin token's request.
    assert.equal((await c.api("POST", `/tenants/${id}/revocations`, { sub: "minted" })).status, 201);

    const procs = [c.admin, c.edge(0).proc];
    const logs = procs.map((p) => p.all.join("")).join("\n");
    assert.ok(logs.length > 2000, `logs were captured (${logs.length} bytes)`);
    assert.match(logs, /TRACE|DEBUG/, "really at trace level");
    for (const s of secrets) {
      assert.ok(s && s.length >= 16, "a real secret");
      const i = logs.indexOf(s);
      assert.equal(i, -1, `a secret reached the logs: …${logs.slice(Math.max(0, i - 300), i + 60)}…`);
      // Signatures alone are secrets' fingerprints too.
      const sig = s.split(".")[2];
      if (sig) assert.equal(logs.indexOf(sig), -1, "a token signature reached the logs");
    }
  });
});
