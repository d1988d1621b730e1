// The browser suite's fixture: `switchboard dev` (started by the JS suite's helper),
// headless Chromium (Debian's /usr/bin/chromium driven by puppeteer-core; never a
// downloaded browser), and a tiny static server listening on two more loopback ports:
//
//   edge      http://127.0.0.1:E   (Socket.IO, POST /v1/tickets)
//   origin A  http://127.0.0.1:A   the tests' "own" site (put on allow-lists)
//   origin B  http://127.0.0.1:B   a foreign origin of the same site: cookies ignore
//                                  ports, so a cookie set for 127.0.0.1 goes along too
//
// Each page loads the official socket.io-client browser bundle and ./harness.js, and the
// tests drive it with `page.evaluate`. Every wait has a timeout (WAIT_MS, in the page).

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import puppeteer from "puppeteer-core";

import { startServer, TENANT, WAIT_MS, unique, nowS } from "../../js/lib/server.mjs";

export { TENANT, WAIT_MS, unique, nowS };

const here = dirname(fileURLToPath(import.meta.url));

/** The browser: `$CHROMIUM_BIN`, else Debian's package. */
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

// Without the background-networking flags Chromium's own requests fail on a closed
// network and it refuses connections; QUIC is off so that every request is plain TCP.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

const BUNDLE = resolve(here, "../node_modules/socket.io-client/dist/socket.io.min.js");
const HARNESS = resolve(here, "harness.js");
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard browser conformance</title>
<link rel="icon" href="data:,">
<script src="/socket.io.min.js"></script>
<script src="/harness.js"></script>
</head><body>switchboard browser conformance</body></html>
`;

/** Launches Chromium, or resolves `{reason}` saying why the suite must be skipped. */
async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    return { reason: `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_BIN)` };
  }
  const userDataDir = mkdtempSync(join(tmpdir(), "sb-chromium-"));
  try {
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir,
      args: CHROMIUM_ARGS,
      // A page that stops answering fails the test instead of hanging it for minutes.
      protocolTimeout: Math.max(30000, WAIT_MS * 6),
      timeout: 30000,
    });
    return { browser, userDataDir };
  } catch (e) {
    rmSync(userDataDir, { recursive: true, force: true });
    return { reason: `Chromium at ${CHROMIUM} does not start: ${String(e && e.message).split("\n")[0]}` };
  }
}

/** A static server for the test pages on a free loopback port; resolves to its origin. */
async function startPages() {
  const bundle = readFileSync(BUNDLE);
  const harness = readFileSync(HARNESS);
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const send = (type, body) => {
      res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (path === "/" || path === "/index.html") return send("text/html; charset=utf-8", PAGE);
    if (path === "/socket.io.min.js") return send("text/javascript; charset=utf-8", bundle);
    if (path === "/harness.js") return send("text/javascript; charset=utf-8", harness);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  });
  await new Promise((res, rej) => {
    server.once("error", rej);
    server.listen(0, "127.0.0.1", res);
  });
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/**
 * One page in its own browser context (its own cookie jar), at `origin`, with the bundle
 * and the harness loaded. Records the page's console, failed requests and the edge's
 * answers (status and CORS headers, WebSocket handshakes), for failure messages.
 */
class BrowserPage {
  constructor(rig, context, page, cdp) {
    this.rig = rig;
    this.context = context;
    this.page = page;
    this.events = [];
    const edge = rig.edge;
    const note = (line) => {
      this.events.push(line);
      if (this.events.length > 60) this.events.shift();
    };
    page.on("console", (m) => note(`console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => note(`pageerror: ${e && e.message}`));
    page.on("requestfailed", (r) => note(`requestfailed: ${r.method()} ${r.url()} (${r.failure() && r.failure().errorText})`));
    page.on("response", (r) => {
      if (!r.url().startsWith(edge)) return;
      const h = r.headers();
      note(
        `${r.request().method()} ${r.url().slice(edge.length)} -> ${r.status()}` +
          ` acao=${h["access-control-allow-origin"] ?? "-"} acac=${h["access-control-allow-credentials"] ?? "-"}` +
          (h["access-control-allow-headers"] ? ` acah=${h["access-control-allow-headers"]}` : ""),
      );
    });
    // Which cookies a request to the edge carried (names only: the values are credentials).
    cdp.on("Network.requestWillBeSentExtraInfo", (ev) => {
      const cookie = Object.entries(ev.headers || {}).find(([k]) => k.toLowerCase() === "cookie");
      if (cookie) note(`  request carried cookies: ${cookie[1].split(/;\s*/).map((c) => c.split("=")[0]).join(", ")}`);
    });
    cdp.on("Network.webSocketHandshakeResponseReceived", (ev) => note(`websocket handshake -> ${ev.response.status}`));
    cdp.on("Network.webSocketCreated", (ev) => note(`websocket ${ev.url.slice(edge.replace(/^http/, "ws").length)}`));
    cdp.on("Network.webSocketFrameError", (ev) => note(`websocket error: ${ev.errorMessage}`));
    cdp.on("Network.webSocketClosed", () => note("websocket closed"));
  }

  /** What this page saw lately, and the tail of the server's log. */
  diagnostics() {
    return `\n--- page ${this.origin}:\n  ${this.events.join("\n  ")}\n--- server log (tail):\n${this.rig.srv.logs().slice(-1500)}`;
  }

  async eval(fn, ...args) {
    try {
      return await this.page.evaluate(fn, ...args);
    } catch (e) {
      e.message = `${e.message}${this.diagnostics()}`;
      throw e;
    }
  }

  /** Opens a socket on `/{ns}` of the edge from this page; returns its id (not awaited). */
  open(opts = {}, ns = TENANT) {
    return this.eval((url, o) => window.H.open(url, o), `${this.rig.edge}/${ns}`, opts);
  }

  /** The next `{event, args}` among `events` on socket `id`. */
  next(id, events, timeoutMs = WAIT_MS) {
    return this.eval((i, ev, t) => window.H.next(i, ev, t), id, [].concat(events), timeoutMs);
  }

  /** The arguments of the next `event` on socket `id`. */
  async event(id, event, timeoutMs = WAIT_MS) {
    return (await this.next(id, event, timeoutMs)).args;
  }

  /** Resolves with the `session` payload; throws (with diagnostics) on `connect_error`. */
  async session(id) {
    const got = await this.next(id, ["session", "connect_error"]);
    if (got.event !== "session") throw new Error(`expected a session, got connect_error ${JSON.stringify(got.args[0])}${this.diagnostics()}`);
    return got.args[0];
  }

  /** Resolves with the `connect_error` (`{message, data, ...}`); throws if a session comes instead. */
  async refused(id) {
    const got = await this.next(id, ["session", "connect", "connect_error"]);
    if (got.event !== "connect_error") throw new Error(`expected connect_error, but the socket got "${got.event}"${this.diagnostics()}`);
    return got.args[0];
  }

  ack(id, event, payload, timeoutMs = WAIT_MS) {
    return this.eval((i, e, p, t) => window.H.ack(i, e, p, t), id, event, payload, timeoutMs);
  }

  transport(id) {
    return this.eval((i) => window.H.transport(i), id);
  }

  /** Resolves once socket `id` runs over WebSocket (after an upgrade from polling). */
  async upgraded(id) {
    if ((await this.transport(id)) === "websocket") return;
    const [name] = await this.event(id, "engine:upgrade");
    if (name !== "websocket") throw new Error(`upgraded to ${name}${this.diagnostics()}`);
  }

  fetchJson(url, init) {
    return this.eval((u, i) => window.H.fetchJson(u, i), url, init);
  }

  close(id) {
    return this.eval((i) => window.H.close(i), id);
  }

  /** `document.cookie = …` in this page: a host-only cookie for 127.0.0.1, every port. */
  setCookie(cookie) {
    return this.eval((c) => {
      document.cookie = c;
      return document.cookie;
    }, cookie);
  }
}

/** `fetch` against the admin API with the admin token; resolves to `{status, body}`. */
async function adminCall(srv, method, path, body) {
  const r = await fetch(`${srv.adminBase}${path}`, {
    method,
    headers: { authorization: `Bearer ${srv.adminToken}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await r.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: r.status, body: parsed };
}

/**
 * Declares a `describe` block whose tests get `rig`: `{srv, edge, originA, originB,
 * page(origin), admin(method, path, body), createTenant(policy)}`. Skipped, with the
 * reason, when Chromium is missing or does not start (unless
 * CONFORMANCE_BROWSER_REQUIRED=1, which makes that a failure).
 */
export async function browserSuite(name, body) {
  const launched = await launchBrowser();
  if (launched.reason && process.env.CONFORMANCE_BROWSER_REQUIRED === "1") throw new Error(launched.reason);
  if (launched.reason) {
    console.log(`# browser suite skipped: ${launched.reason}`);
    // One skipped test (not an empty suite), so that the runner's summary counts it.
    it(name, { skip: launched.reason }, () => {});
    return;
  }
  describe(name, () => {
    const rig = { contexts: [] };
    before(async () => {
      rig.browser = launched.browser;
      rig.srv = await startServer();
      rig.edge = rig.srv.origin;
      rig.pagesA = await startPages();
      rig.pagesB = await startPages();
      rig.originA = rig.pagesA.origin;
      rig.originB = rig.pagesB.origin;
    });
    after(async () => {
      await rig.browser?.close().catch(() => {});
      if (launched.userDataDir) rmSync(launched.userDataDir, { recursive: true, force: true });
      await rig.pagesA?.close();
      await rig.pagesB?.close();
      await rig.srv?.stop();
    });
    // Each test's pages go with it (and with them their sockets and cookies).
    afterEach(async () => {
      for (const c of rig.contexts.splice(0)) await c.close().catch(() => {});
    });

    /** A new page at `origin`; `context` shares a cookie jar with an earlier page. */
    rig.page = async (origin, { context } = {}) => {
      let ctx = context;
      if (!ctx) {
        ctx = await rig.browser.createBrowserContext();
        rig.contexts.push(ctx);
      }
      const page = await ctx.newPage();
      const cdp = await page.createCDPSession();
      await cdp.send("Network.enable");
      const p = new BrowserPage(rig, ctx, page, cdp);
      p.origin = origin;
      await page.goto(`${origin}/`, { waitUntil: "load", timeout: WAIT_MS * 2 });
      const ready = await page.evaluate(() => typeof window.io === "function" && typeof window.H === "object");
      if (!ready) throw new Error(`the test page at ${origin} did not load the socket.io-client bundle${p.diagnostics()}`);
      return p;
    };

    rig.admin = (method, path, b) => adminCall(rig.srv, method, path, b);

    /**
     * A fresh tenant with `policy` and an HS256 key; resolves to `{id, token(sub, body)}`
     * where `token` mints a client token through the admin API.
     */
    rig.createTenant = async (policy) => {
      const id = unique("t").toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 60);
      const t = await rig.admin("POST", "/tenants", { id, policy });
      if (t.status !== 201) throw new Error(`POST /v1/tenants: ${t.status} ${JSON.stringify(t.body)}`);
      const k = await rig.admin("POST", `/tenants/${id}/keys`, { alg: "HS256" });
      if (k.status !== 201) throw new Error(`POST /v1/tenants/${id}/keys: ${k.status} ${JSON.stringify(k.body)}`);
      return {
        id,
        async token(sub = unique("user"), extra = {}) {
          const r = await rig.admin("POST", `/tenants/${id}/tokens`, { sub, caps: { "*": ["subscribe", "publish", "presence"] }, ...extra });
          if (r.status !== 201 || typeof r.body.token !== "string") throw new Error(`POST /v1/tenants/${id}/tokens: ${r.status} ${JSON.stringify(r.body)}`);
          return r.body.token;
        },
      };
    };

    body(rig);
  });
}

/**
 * Subscribes socket `id` to a fresh room, publishes with echo and checks the message
 * comes back with its meta: the socket really works from this page.
 */
export async function roundTrip(assert, page, id, sub) {
  const room = unique("room");
  const s = await page.ack(id, "subscribe", { room });
  assert.equal(s.ok, true, `subscribe ack ${JSON.stringify(s)}${page.diagnostics()}`);
  const p = await page.ack(id, "publish", { room, event: "chat", data: { text: "hi from the browser" }, echo: true });
  assert.equal(p.ok, true, `publish ack ${JSON.stringify(p)}${page.diagnostics()}`);
  const [data, meta] = await page.event(id, "chat");
  assert.deepEqual(data, { text: "hi from the browser" });
  assert.equal(meta.room, room);
  assert.equal(meta.id, p.id);
  assert.equal(meta.offset, p.offset);
  if (sub !== undefined) assert.equal(meta.from, sub);
}
