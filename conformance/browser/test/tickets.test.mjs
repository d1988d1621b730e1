// SPEC §3.3 from a real browser page: `POST /v1/tickets` on the edge with
// `Authorization: Bearer` (a CORS request with a preflight), then a single-use ticket.

import assert from "node:assert/strict";
import { it } from "node:test";

import { browserSuite, roundTrip, unique } from "../lib/rig.mjs";

await browserSuite("browser: tickets", (rig) => {
  for (const transports of [["websocket"], ["polling"]]) {
    it(`a page fetches a ticket from the edge and connects with it once over ${transports[0]}; a second use is ticket_invalid`, async () => {
      const page = await rig.page(rig.originA);
      const sub = unique("user");
      const res = await page.fetchJson(`${rig.edge}/v1/tickets`, {
        method: "POST",
        headers: { Authorization: `Bearer ${rig.srv.token({ sub })}` },
      });
      assert.ok(!res.error, `the page could not read POST /v1/tickets: ${res.error}${page.diagnostics()}`);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(typeof res.body.ticket, "string");
      assert.ok(res.body.ticket.length > 0);
      assert.equal(typeof res.body.expires_in, "number");
      const { ticket } = res.body;

      const first = await page.open({ transports, auth: { ticket } });
      await page.session(first);
      await roundTrip(assert, page, first, sub);

      const second = await page.open({ transports, auth: { ticket } });
      const err = await page.refused(second);
      assert.equal(err.message, "ticket_invalid", page.diagnostics());
    });
  }

  it("a page on an allowed origin can read the edge's refusal of a ticket request (expired token: 401 token_expired)", async () => {
    const page = await rig.page(rig.originA);
    const res = await page.fetchJson(`${rig.edge}/v1/tickets`, {
      method: "POST",
      headers: { Authorization: `Bearer ${rig.srv.token({ exp: Math.floor(Date.now() / 1000) - 5 })}` },
    });
    assert.ok(!res.error, `the browser blocked the refusal (no CORS headers on the error answer): ${res.error}${page.diagnostics()}`);
    assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
    assert.equal(res.body.code, "token_expired", JSON.stringify(res.body));
  });
});
