// Tenant policy end to end (SPEC 3.2, §4): every credential source over both transports,
// origins, cookies, CORS, and JWKS keys — on tenants configured through the admin API.
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, it } from "node:test";

import jwt from "jsonwebtoken";

import { Cluster } from "../lib/cluster.mjs";
import { ALL_CAPS, TRANSPORTS, connected, nowS, once, unique } from "../lib/server.mjs";

let c;
before(async () => {
  c = await new Cluster().edges(1).withEdgeArgs(["--handshake-rate-per-tenant", "20"]).start();
});
after(async () => {
  await c?.stop();
});

const APP = "https://app.example.com";

async function refusedWith(s) {
  const [err] = await once(s, "connect_error");
  s.disconnect();
  return err.message;
}

describe("credential sources", () => {
  for (const transports of TRANSPORTS) {
    const tr = transports[0];
    it(`query token when switched on (${tr})`, async () => {
      const t = await c.tenant({ credential_sources: ["query"] });
      const s = c.connect(0, t, { transports, query: { token: t.token() } });
      assert.equal((await connected(s)).recovered, false);
      s.disconnect();
      // The auth payload is switched off for this tenant.
      const a = c.connect(0, t, { transports, auth: { token: t.token() } });
      assert.equal(await refusedWith(a), "credential_source_disabled");
    });

    it(`cookie from an explicitly allowed origin (${tr})`, async () => {
      const t = await c.tenant({ credential_sources: ["cookie"], allowed_origins: [APP], cookie_name: "rt" });
      const ok = c.connect(0, t, { transports, extraHeaders: { cookie: `x=1; rt=${t.token()}`, origin: APP } });
      await connected(ok);
      ok.disconnect();
      const evil = c.connect(0, t, { transports, extraHeaders: { cookie: `rt=${t.token()}`, origin: "https://evil.example" } });
      assert.equal(await refusedWith(evil), "origin_not_allowed");
      const none = c.connect(0, t, { transports, extraHeaders: { cookie: `rt=${t.token()}` } });
      assert.equal(await refusedWith(none), "origin_not_allowed", "no Origin: no cookie");
    });

    it(`cookies are never accepted under "*" (${tr})`, async () => {
      const t = await c.tenant({ credential_sources: ["cookie"], allowed_origins: ["*"] });
      const s = c.connect(0, t, { transports, extraHeaders: { cookie: `sb_token=${t.token()}`, origin: APP } });
      assert.equal(await refusedWith(s), "origin_not_allowed");
    });

    it(`origins are enforced at CONNECT (${tr})`, async () => {
      const t = await c.tenant({ allowed_origins: [APP, "https://*.corp.example"] });
      for (const origin of [APP, "https://a.corp.example"]) {
        const s = c.connect(0, t, { transports, auth: { token: t.token() }, extraHeaders: { origin } });
        await connected(s);
        s.disconnect();
      }
      const bad = c.connect(0, t, { transports, auth: { token: t.token() }, extraHeaders: { origin: "https://evil.example" } });
      assert.equal(await refusedWith(bad), "origin_not_allowed");
    });
  }
});

describe("CORS", () => {
  it("preflights name authorization, content-type and every tenant's cors_allowed_headers", async () => {
    await c.tenant({ cors_allowed_headers: ["X-App-Version"] });
    const deadline = Date.now() + 10000;
    for (;;) {
      const r = await fetch(`${c.edge(0).base}/v1/tickets`, {
        method: "OPTIONS",
        headers: { origin: "https://anything.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization" },
      });
      assert.equal(r.status, 204);
      assert.equal(r.headers.get("access-control-allow-origin"), "https://anything.example");
      const h = r.headers.get("access-control-allow-headers");
      assert.match(h, /authorization/);
      assert.match(h, /content-type/);
      if (/x-app-version/.test(h)) break;
      assert.ok(Date.now() < deadline, `tenant header never listed: ${h}`);
      await new Promise((res) => setTimeout(res, 500));
    }
  });

  it("the ticket endpoint enforces the tenant's origins and answers with CORS headers", async () => {
    const t = await c.tenant({ allowed_origins: [APP] });
    const ok = await fetch(`${c.edge(0).base}/v1/tickets`, { method: "POST", headers: { authorization: `Bearer ${t.token()}`, origin: APP } });
    assert.equal(ok.status, 201);
    assert.equal(ok.headers.get("access-control-allow-origin"), APP);
    assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
    const bad = await fetch(`${c.edge(0).base}/v1/tickets`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.token()}`, origin: "https://evil.example" },
    });
    assert.equal(bad.status, 403);
    assert.equal((await bad.json()).code, "origin_not_allowed");
    const none = await fetch(`${c.edge(0).base}/v1/tickets`, { method: "POST" });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("content-type"), "application/problem+json");
  });
});

describe("JWKS keys", () => {
  it("tokens signed by a key published at a JWKS URL verify; a rotated-in key is picked up", async () => {
    const keys = [];
    const addKey = () => {
      const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const kid = `k${keys.length}-${randomBytes(3).toString("hex")}`;
      keys.push({ kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" } });
      return keys[keys.length - 1];
    };
    const first = addKey();
    const srv = http.createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    });
    await new Promise((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const id = unique("jwks").toLowerCase().replace(/[^a-z0-9-]/g, "-");
      assert.equal((await c.api("POST", "/tenants", { id })).status, 201);
      const k = await c.api("POST", `/tenants/${id}/keys`, { jwks_url: `http://127.0.0.1:${srv.address().port}/jwks.json` });
      assert.equal(k.status, 201, JSON.stringify(k.body));
      const sign = (key) =>
        jwt.sign({ aud: id, sub: "u", exp: nowS() + 60, caps: ALL_CAPS }, key.privateKey, { algorithm: "RS256", keyid: key.kid });
      const t = { id };
      const s = c.connect(0, t, { auth: { token: sign(first) } });
      await connected(s);
      s.disconnect();
      // A key the issuer just published: the edge refetches the set for an unknown kid,
      // at most once a second per URL (so forged kids cannot hammer the issuer).
      const second = addKey();
      await new Promise((r) => setTimeout(r, 1100));
      const s2 = c.connect(0, t, { auth: { token: sign(second) } });
      await connected(s2);
      s2.disconnect();
      // A kid the issuer never published is refused.
      const forged = { kid: "nope", privateKey: first.privateKey };
      assert.equal(await refusedWith(c.connect(0, t, { auth: { token: sign(forged) } })), "invalid_token");
    } finally {
      srv.close();
    }
  });
});

describe("limits", () => {
  it("max_connections_per_user and max_connections answer over_capacity", async () => {
    const t = await c.tenant({ max_connections: 3, max_connections_per_user: 2 });
    const sub = unique("u");
    const mine = [];
    for (let i = 0; i < 2; i++) {
      const s = c.connect(0, t, { auth: { token: t.token({ sub }) } });
      await connected(s);
      mine.push(s);
    }
    assert.equal(await refusedWith(c.connect(0, t, { auth: { token: t.token({ sub }) } })), "over_capacity");
    const other = c.connect(0, t, { auth: { token: t.token() } });
    await connected(other);
    assert.equal(await refusedWith(c.connect(0, t, { auth: { token: t.token() } })), "over_capacity", "tenant full");
    // A slot frees when a socket leaves.
    mine[0].disconnect();
    const deadline = Date.now() + 5000;
    for (;;) {
      const s = c.connect(0, t, { auth: { token: t.token({ sub }) } });
      const [ok] = await Promise.race([once(s, "session").then(() => [true]), once(s, "connect_error").then(() => [false])]);
      if (ok) break;
      assert.ok(Date.now() < deadline, "the freed slot was never reusable");
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it("handshakes per tenant are rate limited, other tenants unaffected", async () => {
    const busy = await c.tenant();
    const quiet = await c.tenant();
    const results = await Promise.all(
      Array.from({ length: 40 }, () => {
        const s = c.connect(0, busy, { auth: { token: busy.token() } });
        return Promise.race([once(s, "session").then(() => "ok"), once(s, "connect_error").then(([e]) => e.message)]).finally(() =>
          s.disconnect(),
        );
      }),
    );
    assert.ok(results.includes("rate_limited"), JSON.stringify(results));
    assert.ok(results.filter((r) => r === "ok").length >= 15, "the burst is admitted");
    assert.ok(results.every((r) => r === "ok" || r === "rate_limited"), JSON.stringify(results));
    const s = c.connect(0, quiet, { auth: { token: quiet.token() } });
    await connected(s);
  });
});
