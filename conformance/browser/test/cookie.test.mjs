// SPEC §3.2 cookies from real pages: a tenant that accepts the `sb_token` cookie only
// from an explicitly allowed Origin (A). A page on a foreign origin of the same site (B:
// same host, other port, so the browser sends the same cookie) must be refused with
// `origin_not_allowed` on both transports: cross-site WebSocket hijacking defence.

import assert from "node:assert/strict";
import { before, it } from "node:test";

import { browserSuite, roundTrip, unique } from "../lib/rig.mjs";

await browserSuite("browser: cookie credentials and the Origin allow-list", (rig) => {
  let tenant;
  before(async () => {
    tenant = await rig.createTenant({
      credential_sources: ["auth", "header", "ticket", "cookie"],
      allowed_origins: [rig.originA],
    });
  });

  /** Page A (allowed) and page B (foreign) sharing one cookie jar holding sb_token. */
  async function pagesWithCookie(sub) {
    const token = await tenant.token(sub);
    const a = await rig.page(rig.originA);
    const jar = await a.setCookie(`sb_token=${token}; path=/; SameSite=Lax`);
    assert.match(jar, /sb_token=/, "the page could not set the cookie");
    const b = await rig.page(rig.originB, { context: a.context });
    return { a, b };
  }

  for (const transports of [["websocket"], ["polling"]]) {
    it(`cookie from the allowed origin with withCredentials over ${transports[0]} connects`, async () => {
      const sub = unique("user");
      const { a } = await pagesWithCookie(sub);
      const id = await a.open({ transports, withCredentials: true }, tenant.id);
      await a.session(id);
      await roundTrip(assert, a, id, sub);
    });

    it(`the same cookie from a foreign origin of the same site over ${transports[0]} is refused with origin_not_allowed`, async () => {
      const sub = unique("user");
      const { b } = await pagesWithCookie(sub);
      const id = await b.open({ transports, withCredentials: true }, tenant.id);
      const err = await b.refused(id);
      assert.equal(err.message, "origin_not_allowed", b.diagnostics());
    });
  }
});
