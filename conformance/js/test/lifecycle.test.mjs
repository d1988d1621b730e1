// SPEC §4: health endpoints and SIGTERM draining. Each test that stops the server starts
// its own.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { TRANSPORTS, WAIT_MS, connected, once, open, startServer } from "../lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

test("GET /healthz answers 200", async () => {
  const r = await fetch(`${srv.edgeBase}/healthz`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(r.status, 200);
});

test("GET /readyz answers 200 while serving", async () => {
  const r = await fetch(`${srv.edgeBase}/readyz`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(r.status, 200);
});

test("GET /metrics answers Prometheus/OpenMetrics text", async () => {
  const { socket } = await open(srv);
  socket.disconnect();
  const r = await fetch(`${srv.edgeBase}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") || "", /^(text\/plain|application\/openmetrics-text)/);
  const body = await r.text();
  assert.match(body, /^# (TYPE|HELP) /m, "at least one metric family after a handshake");
});

for (const transports of TRANSPORTS) {
  test(`SIGTERM ends ${transports[0]} sockets with session_end draining, then the process exits`, async () => {
    const own = await startServer();
    try {
      const { socket } = await open(own, { transports });
      const end = once(socket, "session_end", 10000);
      const disc = once(socket, "disconnect", 10000);
      own.signal("SIGTERM");
      const [body] = await end;
      assert.equal(body.code, "draining");
      assert.equal(typeof body.message, "string");
      await disc;
      await own.exited(10000);
    } finally {
      await own.stop();
    }
  });
}

test("SIGTERM exits promptly even with an idle Engine.IO polling session waiting on a long-poll", async () => {
  // A polling client that never (or not yet) joined a namespace holds a GET open for up to
  // pingInterval (25 s). Draining must not wait for it (the server bounds it at a few s).
  const own = await startServer();
  try {
    const base = `${own.origin}/socket.io/?EIO=4&transport=polling`;
    const r = await fetch(base, { signal: AbortSignal.timeout(WAIT_MS) });
    const sid = JSON.parse((await r.text()).slice(1)).sid;
    await (await fetch(`${base}&sid=${sid}`, { signal: AbortSignal.timeout(WAIT_MS) })).text(); // first ping
    const pending = fetch(`${base}&sid=${sid}`, { signal: AbortSignal.timeout(30000) }).then((x) => x.text()).catch(() => null);
    const { socket } = await open(own, { transports: ["websocket"] });
    const t0 = Date.now();
    own.signal("SIGTERM");
    await once(socket, "disconnect", 10000);
    await own.exited(10000);
    assert.ok(Date.now() - t0 < 10000);
    await pending;
  } finally {
    await own.stop();
  }
});

test("after SIGTERM no new connection is accepted", async () => {
  const own = await startServer();
  try {
    const { socket } = await open(own);
    const ended = once(socket, "session_end", 10000);
    own.signal("SIGTERM");
    await ended;
    const s = own.connect({ auth: { token: own.token() } });
    await assert.rejects(connected(s, 3000));
    s.disconnect();
  } finally {
    await own.stop();
  }
});
