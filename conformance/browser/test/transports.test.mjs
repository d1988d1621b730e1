// SPEC §3.2 from a real browser page on another origin than the edge: the `auth`
// payload over WebSocket and with socket.io-client's defaults (polling, then upgrade),
// `Authorization: Bearer` via `extraHeaders` (a CORS preflight), and a query token.

import assert from "node:assert/strict";
import { it } from "node:test";

import { browserSuite, roundTrip, unique } from "../lib/rig.mjs";

await browserSuite("browser: credentials and transports from another origin", (rig) => {
  it("auth payload over WebSocket: connect, session, subscribe, publish with echo, receive", async () => {
    const page = await rig.page(rig.originA);
    const sub = unique("user");
    const id = await page.open({ transports: ["websocket"], auth: { token: rig.srv.token({ sub }) } });
    const session = await page.session(id);
    assert.equal(typeof session.id, "string");
    assert.equal(session.recovered, false);
    assert.equal(await page.transport(id), "websocket");
    await roundTrip(assert, page, id, sub);
  });

  it("auth payload with default options: polling first (CORS), then upgraded to WebSocket", async () => {
    const page = await rig.page(rig.originA);
    const sub = unique("user");
    const id = await page.open({ auth: { token: rig.srv.token({ sub }) } });
    const [first] = await page.event(id, "engine:open");
    assert.equal(first, "polling", "socket.io-client's default starts with HTTP long-polling");
    const session = await page.session(id);
    assert.equal(typeof session.id, "string");
    await page.upgraded(id);
    assert.equal(await page.transport(id), "websocket");
    await roundTrip(assert, page, id, sub);
  });

  it("extraHeaders Authorization: Bearer over polling connects (CORS preflight)", async () => {
    const page = await rig.page(rig.originA);
    const sub = unique("user");
    const id = await page.open({
      transports: ["polling"],
      extraHeaders: { Authorization: `Bearer ${rig.srv.token({ sub })}` },
    });
    await page.session(id);
    assert.equal(await page.transport(id), "polling");
    await roundTrip(assert, page, id, sub);
  });

  it("extraHeaders Authorization: Bearer with default transports connects and upgrades to WebSocket", async () => {
    const page = await rig.page(rig.originA);
    const sub = unique("user");
    const id = await page.open({ extraHeaders: { Authorization: `Bearer ${rig.srv.token({ sub })}` } });
    await page.session(id);
    await page.upgraded(id);
    assert.equal(await page.transport(id), "websocket");
    await roundTrip(assert, page, id, sub);
  });

  for (const transports of [["websocket"], ["polling"]]) {
    it(`query token (?token=) over ${transports[0]} is refused with query_token_disabled`, async () => {
      const page = await rig.page(rig.originA);
      const id = await page.open({ transports, query: { token: rig.srv.token() } });
      const err = await page.refused(id);
      assert.equal(err.message, "query_token_disabled", page.diagnostics());
    });
  }
});
