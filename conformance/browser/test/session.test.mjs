// SPEC §3.5–§3.6 seen by a real page: the `refresh` ack, and `session_end` when the
// admin API kicks the user or revokes their tokens.

import assert from "node:assert/strict";
import { it } from "node:test";

import { browserSuite, nowS, TENANT, unique } from "../lib/rig.mjs";

await browserSuite("browser: refresh and session_end", (rig) => {
  for (const transports of [["websocket"], ["polling"]]) {
    it(`refresh over ${transports[0]}: the page gets {ok: true, exp} for a newer token`, async () => {
      const page = await rig.page(rig.originA);
      const sub = unique("user");
      const id = await page.open({ transports, auth: { token: rig.srv.token({ sub, exp: nowS() + 120 }) } });
      await page.session(id);
      const exp = nowS() + 900;
      const a = await page.ack(id, "refresh", { token: rig.srv.token({ sub, exp }) });
      assert.deepEqual(a, { ok: true, exp }, page.diagnostics());
      // A token for another user is refused, and the session goes on.
      const bad = await page.ack(id, "refresh", { token: rig.srv.token({ sub: unique("other") }) });
      assert.equal(bad.ok, false, JSON.stringify(bad));
      assert.equal(bad.error.code, "invalid_token");
      assert.equal((await page.ack(id, "subscribe", { room: unique("room") })).ok, true);
    });

    it(`kick over ${transports[0]}: DELETE /v1/tenants/{t}/connections?sub= ends the page's session with session_end kicked`, async () => {
      const page = await rig.page(rig.originA);
      const sub = unique("user");
      const id = await page.open({ transports, auth: { token: rig.srv.token({ sub }) } });
      await page.session(id);
      const r = await rig.admin("DELETE", `/tenants/${TENANT}/connections?sub=${encodeURIComponent(sub)}`);
      assert.ok(r.status >= 200 && r.status < 300, `kick: ${r.status} ${JSON.stringify(r.body)}`);
      const [end] = await page.event(id, "session_end");
      assert.equal(end.code, "kicked", JSON.stringify(end));
      assert.equal(typeof end.message, "string");
      await page.event(id, "disconnect");
    });

    it(`revocation over ${transports[0]}: POST /v1/tenants/{t}/revocations {sub} ends the page's session with session_end token_revoked`, async () => {
      const page = await rig.page(rig.originA);
      const sub = unique("user");
      const id = await page.open({ transports, auth: { token: rig.srv.token({ sub }) } });
      await page.session(id);
      const r = await rig.admin("POST", `/tenants/${TENANT}/revocations`, { sub });
      assert.equal(r.status, 201, `revoke: ${r.status} ${JSON.stringify(r.body)}`);
      const [end] = await page.event(id, "session_end");
      assert.equal(end.code, "token_revoked", JSON.stringify(end));
      await page.event(id, "disconnect");
      // A fresh handshake with a token issued before the revocation is refused too.
      const again = await page.open({ transports, auth: { token: rig.srv.token({ sub, iat: nowS() - 5 }) } });
      assert.equal((await page.refused(again)).message, "token_revoked");
    });
  }
});
