// SPEC §3.2 cookies from real pages: a tenant that accepts the `sb_token` cookie only
// from an explicitly allowed Origin (A). A page on a foreign origin of the same site (B:
// same host, other port, so the browser sends the same cookie) must be refused with
// `origin_not_allowed` on both transports: cross-site WebSocket hijacking defence.

import assert from "node:assert/strict";
import { before, it } from "node:test";

import { browserSuite, roundTrip, unique } from "../lib/rig.mjs";

await browserSuite("browser: cookie credentials and the Origin allow-list", (rig) => {
  let tenant; // cookies from origin A only
  let control; // cookies (named sb_b) from origin B only: proves B's page does send them
  before(async () => {
    tenant = await rig.createTenant({
      credential_sources: ["auth", "header", "ticket", "cookie"],
      allowed_origins: [rig.originA],
    });
    control = await rig.createTenant({
      credential_sources: ["cookie"],
      allowed_origins: [rig.originB],
      cookie_name: "sb_b",
    });
  });

  /**
   * Page A (allowed) and page B (foreign) sharing one cookie jar, into which page A put
   * `sb_token` (for `tenant`) and `sb_b` (for `control`), both for the user `sub`.
   */
  async function pagesWithCookie(sub) {
    const a = await rig.page(rig.originA);
    await a.setCookie(`sb_token=${await tenant.token(sub)}; path=/; SameSite=Lax`);
    const jar = await a.setCookie(`sb_b=${await control.token(sub)}; path=/; SameSite=Lax`);
    assert.match(jar, /sb_token=.*sb_b=|sb_b=.*sb_token=/, "the page could not set the cookies");
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
      // Control: the foreign page's handshakes do carry the jar's cookies (a tenant that
      // allows origin B takes its sb_b cookie), so the refusal below is the Origin check.
      const ok = await b.open({ transports, withCredentials: true }, control.id);
      await b.session(ok);
      await b.close(ok);

      const id = await b.open({ transports, withCredentials: true }, tenant.id);
      const err = await b.refused(id);
      assert.equal(err.message, "origin_not_allowed", b.diagnostics());
    });
  }
});
