// SPEC §4 from a real browser: preflights are answered before the tenant is known, with
// `authorization`, `content-type` and every tenant's `cors_allowed_headers`. A page
// sending a custom header listed by a tenant's policy connects over polling; a header no
// tenant lists is stopped by the browser's preflight.

import assert from "node:assert/strict";
import { before, it } from "node:test";

import { browserSuite, roundTrip, unique } from "../lib/rig.mjs";

await browserSuite("browser: CORS preflights and cors_allowed_headers", (rig) => {
  let tenant;
  before(async () => {
    // Created before this server answers any preflight, so its list is in the first one.
    tenant = await rig.createTenant({ cors_allowed_headers: ["X-App-Version"] });
  });

  it("a header in a tenant's cors_allowed_headers passes the preflight: polling connects with it", async () => {
    const page = await rig.page(rig.originA);
    const sub = unique("user");
    const token = await tenant.token(sub);
    const id = await page.open(
      { transports: ["polling"], extraHeaders: { "X-App-Version": "1.2.3", Authorization: `Bearer ${token}` } },
      tenant.id,
    );
    await page.session(id);
    await roundTrip(assert, page, id, sub);
  });

  it("a header no tenant allows is stopped by the preflight (the browser refuses the polling request)", async () => {
    const page = await rig.page(rig.originA);
    const id = await page.open(
      { transports: ["polling"], extraHeaders: { "X-Not-Allowed": "1" }, auth: { token: await tenant.token() } },
      tenant.id,
    );
    const err = await page.refused(id);
    assert.equal(err.message, "xhr poll error", `expected the browser to block the request${page.diagnostics()}`);
  });
});
