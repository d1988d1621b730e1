// Hostile input at the Engine.IO / Socket.IO layer, over raw WebSocket (`ws`) and raw
// HTTP long-polling (`fetch`). After each case: the offender got an answer it can act on
// (an error ack, a connect_error, or its connection closed — or, for a packet that asks
// for no answer, its connection still works), and the server still serves an ordinary
// client (connect + publish round trip). Every wait has a deadline.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { WAIT_MS, ack, assertHealthy, open, sleep, startServer } from "../lib/server.mjs";

const REFUSAL_CODES = [
  "unknown_tenant",
  "missing_credentials",
  "invalid_token",
  "token_expired",
  "token_not_yet_valid",
  "token_revoked",
  "ticket_invalid",
  "query_token_disabled",
  "credential_source_disabled",
  "origin_not_allowed",
  "rate_limited",
  "over_capacity",
  "unavailable",
];

let srv;
let token;
before(async () => {
  srv = await startServer();
  token = srv.token();
});
after(async () => {
  await srv?.stop();
});

/** A raw Engine.IO v4 WebSocket client that records what it receives. */
class RawWs {
  constructor(url) {
    this.frames = [];
    this.waiters = new Set();
    this.closed = null;
    this.ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024 });
    this.ws.on("message", (data, isBinary) => {
      const f = isBinary ? { binary: true, data } : { binary: false, text: data.toString() };
      // Answer the server's pings so that slow cases are not cut by the heartbeat.
      if (!f.binary && f.text === "2") this.ws.send("3");
      this.frames.push(f);
      this.check();
    });
    this.ws.on("close", (code) => {
      this.closed = { code };
      this.check();
    });
    this.ws.on("error", () => {
      this.closed ??= { code: "error" };
      this.check();
    });
  }

  check() {
    for (const w of [...this.waiters]) {
      const r = w.pick();
      if (r !== undefined) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.res(r);
      }
    }
  }

  /** Resolves with `pick()`'s first defined answer, re-evaluated on every frame and on close. */
  until(pick, what, timeoutMs = WAIT_MS) {
    return new Promise((res, rej) => {
      const w = { pick, res };
      w.timer = setTimeout(() => {
        this.waiters.delete(w);
        rej(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; frames: ${this.dump()}`));
      }, timeoutMs);
      this.waiters.add(w);
      this.check();
    });
  }

  dump() {
    const s = JSON.stringify(this.frames.map((f) => (f.binary ? `<binary ${f.data.length}>` : f.text.slice(0, 120))));
    return `${s.slice(0, 600)}${this.closed ? ` closed(${this.closed.code})` : ""}`;
  }

  texts() {
    return this.frames.filter((f) => !f.binary).map((f) => f.text);
  }

  /** Waits for the Engine.IO open packet. */
  async open() {
    const t = await this.until(() => this.texts().find((x) => x.startsWith("0{")) ?? (this.closed ? null : undefined), "the open packet");
    assert.ok(t, `no Engine.IO open packet: ${this.dump()}`);
    const o = JSON.parse(t.slice(1));
    assert.equal(typeof o.sid, "string");
    assert.equal(o.maxPayload, 1048576, "maxPayload is 1 MiB");
    return o;
  }

  send(x) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(x);
  }

  /** Sends a CONNECT to `/demo` with a valid token and waits for its acceptance and `session`. */
  async connectDemo(tok = token) {
    this.send(`40/demo,${JSON.stringify({ token: tok })}`);
    await this.until(() => (this.texts().some((x) => x.startsWith('42/demo,["session"')) ? true : undefined), "CONNECT acceptance and session");
  }

  /** The ack for `id` on `/demo`, parsed, or `{closed}` if the connection closes first. */
  ackOrClose(id, timeoutMs = WAIT_MS) {
    const prefix = `43/demo,${id}[`;
    return this.until(() => {
      const t = this.texts().find((x) => x.startsWith(prefix));
      if (t) return { ack: JSON.parse(t.slice(prefix.length - 1))[0] };
      if (this.closed) return { closed: this.closed };
      return undefined;
    }, `ack ${id} or close`, timeoutMs);
  }

  /** The CONNECT answer for namespace `ns` (`40` or `44`), or `{closed}`. */
  connectAnswer(ns, timeoutMs = WAIT_MS) {
    return this.until(() => {
      for (const t of this.texts()) {
        if (t.startsWith(`44${ns},`) || (ns === "/" && t.startsWith("44{"))) {
          return { error: JSON.parse(t.slice(t.indexOf("{"))) };
        }
        if (t.startsWith(`40${ns},`) || (ns === "/" && t.startsWith("40{"))) return { ok: true };
      }
      if (this.closed) return { closed: this.closed };
      return undefined;
    }, `the CONNECT answer for ${JSON.stringify(ns.slice(0, 40))}`, timeoutMs);
  }

  waitClosed(timeoutMs = WAIT_MS) {
    return this.until(() => this.closed ?? undefined, "the connection to close", timeoutMs);
  }

  /**
   * After a packet that asks for no answer: either the server closed the connection, or
   * the connection still works (a fresh publish with an ack is answered).
   */
  async closedOrStillWorking(timeoutMs = WAIT_MS) {
    const id = 900 + Math.floor(Math.random() * 99);
    this.send(`42/demo,${id}["publish",{"room":"hostile","event":"e","data":1}]`);
    const r = await this.ackOrClose(id, timeoutMs);
    if (r.closed) return "closed";
    assert.equal(r.ack.ok, true, `the follow-up publish: ${JSON.stringify(r.ack)}`);
    return "working";
  }

  close() {
    try {
      this.ws.terminate();
    } catch {}
  }
}

const wsUrl = () => `${srv.origin.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;

async function rawWs() {
  const r = new RawWs(wsUrl());
  await r.open();
  return r;
}

/** Runs one hostile case on a fresh raw connection, then checks the server is healthy. */
async function hostile(fn) {
  const r = await rawWs();
  try {
    await fn(r);
  } finally {
    r.close();
  }
  await assertHealthy(srv, ["websocket"]);
  await assertHealthy(srv, ["polling"]);
}

describe("hostile input over a raw WebSocket", () => {
  for (const [what, frame] of [
    ["a garbage text frame", "garbage"],
    ["an unknown Engine.IO packet type", "9"],
    ["another unknown Engine.IO packet type", "7hello"],
    ["an empty frame", ""],
    ["a binary frame before any CONNECT", Buffer.from([0xde, 0xad, 0xbe, 0xef])],
    ["an unknown Socket.IO packet type", "4Z"],
    ["a Socket.IO packet type 9", "49/demo,[]"],
  ]) {
    test(`${what} closes the connection`, () =>
      hostile(async (r) => {
        r.send(frame);
        await r.waitClosed();
      }));
  }

  test("bad JSON in a CONNECT (40/demo,{bad) gets a connect_error with a SPEC code, or a close", () =>
    hostile(async (r) => {
      r.send("40/demo,{bad");
      const a = await r.connectAnswer("/demo");
      if (a.closed) return;
      assert.ok(a.error, `not refused: ${r.dump()}`);
      assert.ok(REFUSAL_CODES.includes(a.error.message), `message ${JSON.stringify(a.error.message)}`);
    }));

  for (const [what, auth] of [
    ["a string", '"token"'],
    ["an array", '["a", "b"]'],
    ["a number", "12345"],
    ["null", "null"],
  ]) {
    test(`a CONNECT whose auth is ${what} is refused`, () =>
      hostile(async (r) => {
        r.send(`40/demo,${auth}`);
        const a = await r.connectAnswer("/demo");
        if (a.closed) return;
        assert.ok(a.error, `not refused: ${r.dump()}`);
        assert.ok(REFUSAL_CODES.includes(a.error.message), a.error.message);
      }));
  }

  test("a huge token in the auth payload (500 KB) is refused with invalid_token", () =>
    hostile(async (r) => {
      r.send(`40/demo,${JSON.stringify({ token: "x".repeat(500_000) })}`);
      const a = await r.connectAnswer("/demo");
      if (a.closed) return;
      assert.equal(a.error?.message, "invalid_token", r.dump());
    }));

  test("a huge auth object (900 KB of junk fields) is refused", () =>
    hostile(async (r) => {
      const auth = {};
      for (let i = 0; i < 9000; i++) auth[`k${i}`] = "v".repeat(90);
      r.send(`40/demo,${JSON.stringify(auth)}`);
      const a = await r.connectAnswer("/demo");
      if (a.closed) return;
      assert.ok(a.error && REFUSAL_CODES.includes(a.error.message), r.dump());
    }));

  test("a huge ticket in the auth payload is refused with ticket_invalid", () =>
    hostile(async (r) => {
      r.send(`40/demo,${JSON.stringify({ ticket: "t".repeat(200_000) })}`);
      const a = await r.connectAnswer("/demo");
      if (a.closed) return;
      assert.equal(a.error?.message, "ticket_invalid", r.dump());
    }));

  for (const ns of [
    "/dé mo",
    "/DEMO",
    "/demo\u0000",
    "/demo\nx",
    "/<script>",
    "/%2e%2e",
    "/*",
    "/>",
    "/demo-",
    `/${"a".repeat(64)}`,
    `/${"a".repeat(10_000)}`,
    `/${"é".repeat(5_000)}`,
  ]) {
    const label = JSON.stringify(ns.length > 24 ? `${ns.slice(0, 24)}…(${ns.length})` : ns);
    test(`a CONNECT to the namespace ${label} is refused with a SPEC code`, () =>
      hostile(async (r) => {
        r.send(`40${ns},${JSON.stringify({ token })}`);
        const a = await r.connectAnswer(ns);
        if (a.closed) return;
        assert.ok(a.error, `not refused: ${r.dump()}`);
        assert.equal(a.error.message, "unknown_tenant");
      }));
  }

  for (const ns of ["/", "/demo/x", "/demo/../x", "/a/b/c"]) {
    test(`a CONNECT to the non-tenant namespace ${JSON.stringify(ns)} is refused with unknown_tenant`, () =>
      hostile(async (r) => {
        r.send(ns === "/" ? `40${JSON.stringify({ token })}` : `40${ns},${JSON.stringify({ token })}`);
        const a = await r.connectAnswer(ns);
        if (a.closed) return;
        assert.ok(a.error, `not refused: ${r.dump()}`);
        // SPEC 3.4: the message of a refusal is exactly one code.
        assert.equal(a.error.message, "unknown_tenant");
      }));
  }

  test("a truncated event packet (42/demo,[\"publish\") closes the connection or is ignored", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('42/demo,["publish"');
      await r.closedOrStillWorking();
    }));

  test("a truncated event packet asking for an ack (42/demo,5[\"publish\") closes or is ignored", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('42/demo,5["publish"');
      await r.closedOrStillWorking();
    }));

  for (const [what, pkt] of [
    ["a non-array payload", '42/demo,3{"room":"x"}'],
    ["an empty array", "42/demo,3[]"],
    ["a numeric event name", '42/demo,3[42,{"room":"x"}]'],
    ["a null event name", '42/demo,3[null]'],
  ]) {
    test(`an event packet with ${what} gets an error ack, a close, or is ignored`, () =>
      hostile(async (r) => {
        await r.connectDemo();
        r.send(pkt);
        const a = await r.ackOrClose(3, 1500).catch(() => null);
        if (a && a.ack) {
          assert.equal(a.ack.ok, false, JSON.stringify(a.ack));
          return;
        }
        if (a && a.closed) return;
        await r.closedOrStillWorking();
      }));
  }

  test("an unknown event gets an invalid_event error ack", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('42/demo,4["definitely-not-an-event",{"room":"x"}]');
      const a = await r.ackOrClose(4);
      assert.ok(a.ack, r.dump());
      assert.deepEqual(a.ack.ok, false);
      assert.equal(a.ack.error.code, "invalid_event");
    }));

  test("a reserved event name sent as an event gets an error ack or is ignored", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('42/demo,4["disconnect",{"room":"x"}]');
      const a = await r.ackOrClose(4, 1500).catch(() => null);
      if (a?.ack) assert.equal(a.ack.ok, false);
      if (!a?.closed) await r.closedOrStillWorking();
    }));

  test("an event for a namespace the connection never joined is not carried out", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('42/other,6["publish",{"room":"hostile","event":"e","data":1}]');
      r.send('42/,7["publish",{"room":"hostile","event":"e","data":1}]');
      const a6 = await r.ackOrClose(6, 1000).catch(() => null);
      if (a6?.ack) assert.equal(a6.ack.ok, false, "never carried out");
      if (!a6?.closed) await r.closedOrStillWorking();
    }));

  test("an event before any CONNECT is not carried out", () =>
    hostile(async (r) => {
      r.send('42/demo,6["publish",{"room":"hostile","event":"e","data":1}]');
      const a = await r.ackOrClose(6, 1000).catch(() => null);
      if (a?.ack) assert.equal(a.ack.ok, false, "never carried out without a handshake");
    }));

  test("a second CONNECT to the same namespace does not break the connection", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send(`40/demo,${JSON.stringify({ token: "garbage" })}`);
      await r.closedOrStillWorking();
    }));

  test("an ack id too large for any integer does not break the server", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('42/demo,99999999999999999999999["publish",{}]');
      await r.closedOrStillWorking();
    }));

  test("an ACK for an ack id the server never asked for is ignored or closes", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('43/demo,12345[{"ok":true}]');
      await r.closedOrStillWorking();
    }));

  test("subscribes sent right after the client's own DISCONNECT leave no ghost in presence", async () => {
    // The outcome is a race inside the server, so try it on 10 connections at once.
    const rooms = [];
    const conns = await Promise.all(Array.from({ length: 10 }, () => rawWs()));
    try {
      await Promise.all(
        conns.map(async (r) => {
          await r.connectDemo(srv.token());
          r.send("41/demo,");
          for (let k = 0; k < 5; k++) {
            const room = `ghost-${randomBytes(6).toString("hex")}`;
            rooms.push(room);
            r.send(`42/demo,${20 + k}["subscribe",{"room":"${room}"}]`);
          }
          // Whatever the answers, the socket is gone once the connection is.
          await r.until(() => (r.closed || r.texts().some((t) => t.startsWith("43/demo,24[")) ? true : undefined), "close or the last ack", 2000).catch(() => null);
        }),
      );
    } finally {
      for (const r of conns) r.close();
    }
    await assertHealthy(srv, ["websocket"]);
    // The raw connections are closed; presence must become empty (it may lag a little).
    const { socket } = await open(srv);
    try {
      const deadline = Date.now() + 3000;
      let ghosts;
      for (;;) {
        ghosts = [];
        for (const room of rooms) {
          const members = (await ack(socket, "presence", { room })).members;
          if (members.length) ghosts.push(`${room}: ${JSON.stringify(members)}`);
        }
        if (ghosts.length === 0 || Date.now() > deadline) break;
        await sleep(100);
      }
      assert.deepEqual(ghosts.slice(0, 3), [], `${ghosts.length} of ${rooms.length} rooms keep a member whose socket is gone`);
    } finally {
      socket.disconnect();
    }
  });

  test('a binary attachment packet (451-/demo,["publish",{"_placeholder":true,"num":0}]) + binary frame', () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('451-/demo,["publish",{"_placeholder":true,"num":0}]');
      r.send(Buffer.from([1, 2, 3, 4]));
      await r.closedOrStillWorking();
    }));

  test("a binary publish asking for an ack gets an ack or a close", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('451-/demo,11["publish",{"room":"hostile","event":"e","data":{"_placeholder":true,"num":0}}]');
      r.send(Buffer.from([1, 2, 3, 4]));
      const a = await r.ackOrClose(11);
      if (a.closed) return;
      assert.equal(typeof a.ack.ok, "boolean", JSON.stringify(a.ack));
      await r.closedOrStillWorking();
    }));

  test("a binary packet whose attachments never come, followed by text, closes or is ignored", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('452-/demo,12["publish",{"room":"hostile","event":"e","data":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]}]');
      r.send(Buffer.from([1]));
      r.send("hello");
      const a = await r.ackOrClose(12, 1500).catch(() => null);
      if (a?.closed) return;
      await r.closedOrStillWorking();
    }));

  test("a binary packet announcing a billion attachments closes the connection", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send('45999999999-/demo,13["publish",{}]');
      await r.waitClosed();
    }));

  test("binary frames with no binary packet announced close the connection or are ignored", () =>
    hostile(async (r) => {
      await r.connectDemo();
      for (let i = 0; i < 10; i++) r.send(randomBytes(1000));
      const a = await r.until(() => (r.closed ? true : undefined), "close", 1000).catch(() => null);
      if (!a) await r.closedOrStillWorking();
    }));

  test("a packet far over the 1 MiB max payload (4 MiB) closes the connection", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send(`42/demo,14["publish",{"room":"hostile","event":"e","data":"${"x".repeat(4 * 1024 * 1024)}"}]`);
      await r.waitClosed(15000);
    }));

  test("a publish under 1 MiB but over max_message_bytes gets payload_too_large", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send(`42/demo,15["publish",{"room":"hostile","event":"e","data":"${"x".repeat(900_000)}"}]`);
      const a = await r.ackOrClose(15);
      assert.ok(a.ack, r.dump());
      assert.equal(a.ack.error?.code, "payload_too_large");
    }));

  test("deeply nested JSON (10 000 levels) gets an error ack or a close, never a crash", () =>
    hostile(async (r) => {
      await r.connectDemo();
      r.send(`42/demo,16["publish",{"room":"hostile","event":"e","data":${"[".repeat(10_000)}${"]".repeat(10_000)}}]`);
      const a = await r.ackOrClose(16);
      if (a.ack) assert.equal(a.ack.ok, false, JSON.stringify(a.ack));
    }));

  test("deeply nested JSON in the CONNECT auth is refused, never a crash", () =>
    hostile(async (r) => {
      r.send(`40/demo,{"token":${"[".repeat(10_000)}${"]".repeat(10_000)}}`);
      const a = await r.connectAnswer("/demo");
      if (a.closed) return;
      assert.ok(a.error && REFUSAL_CODES.includes(a.error.message), r.dump());
    }));

  test("a flood of 3000 publishes on one connection is answered (mostly rate_limited)", () =>
    hostile(async (r) => {
      await r.connectDemo();
      const N = 3000;
      const t0 = Date.now();
      for (let i = 0; i < N; i++) r.send(`42/demo,${1000 + i}["publish",{"room":"flood","event":"e","data":${i}}]`);
      const last = await r.ackOrClose(1000 + N - 1, 30000);
      const elapsedS = (Date.now() - t0) / 1000;
      if (last.closed) return;
      const acks = r.texts().filter((t) => t.startsWith("43/demo,"));
      assert.equal(acks.length, N, "every publish answered");
      const limited = acks.filter((t) => t.includes('"rate_limited"')).length;
      const accepted = N - limited;
      // 50/s with a burst of 50: no more than that got through while the flood lasted.
      assert.ok(accepted <= 50 + Math.ceil(50 * elapsedS) + 5, `accepted ${accepted} in ${elapsedS} s`);
      assert.ok(limited > 0);
    }));

  test("thousands of CONNECTs to random namespaces are all refused and leave nothing behind", async () => {
    const conns = await Promise.all(Array.from({ length: 10 }, () => rawWs()));
    const names = [];
    try {
      for (const r of conns) {
        const batch = [];
        for (let i = 0; i < 300; i++) {
          const ns = `/rnd-${randomBytes(6).toString("hex")}`;
          batch.push(ns);
          r.send(`40${ns},${JSON.stringify({ token })}`);
        }
        names.push(batch);
      }
      await Promise.all(
        conns.map((r, k) =>
          r.until(() => {
            if (r.closed) return "closed";
            const refused = r.texts().filter((t) => t.startsWith("44/rnd-")).length;
            return refused >= names[k].length ? refused : undefined;
          }, "300 refusals", 30000),
        ),
      );
      // Each is refused: unknown_tenant, or rate_limited once this IP's handshake budget
      // is spent (SPEC 3.4 codes both). None is ever accepted.
      const codes = {};
      for (const r of conns) {
        assert.ok(!r.texts().some((x) => x.startsWith("40/rnd-")), "no made-up tenant accepted");
        for (const t of r.texts().filter((x) => x.startsWith("44/rnd-"))) {
          const code = JSON.parse(t.slice(t.indexOf(",") + 1)).message;
          codes[code] = (codes[code] || 0) + 1;
        }
      }
      assert.deepEqual(
        Object.keys(codes).filter((c) => c !== "unknown_tenant" && c !== "rate_limited"),
        [],
        JSON.stringify(codes),
      );
      assert.ok(codes.unknown_tenant > 0, JSON.stringify(codes));
    } finally {
      for (const r of conns) r.close();
    }
    // Made-up tenant names do not become metric series (whatever the refusal code):
    // otherwise a flood of names is a flood of series.
    const metrics = await (await fetch(`${srv.edgeBase}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) })).text();
    const made = new Set(names.flat().map((ns) => ns.slice(1)));
    const leaked = metrics.split("\n").filter((l) => [...l.matchAll(/tenant="([^"]*)"/g)].some((m) => made.has(m[1])));
    assert.deepEqual(leaked.slice(0, 5), [], `${leaked.length} metric series name made-up tenants`);
    await assertHealthy(srv, ["websocket"]);
    await assertHealthy(srv, ["polling"]);
  });

  test("200 idle Engine.IO connections that never CONNECT do not stop others", async () => {
    const idle = await Promise.all(Array.from({ length: 200 }, () => rawWs()));
    try {
      await assertHealthy(srv, ["websocket"]);
      await assertHealthy(srv, ["polling"]);
    } finally {
      for (const r of idle) r.close();
    }
  });
});

describe("hostile input over raw HTTP long-polling", () => {
  const base = () => `${srv.origin}/socket.io/?EIO=4&transport=polling`;

  async function req(url, opts = {}) {
    const res = await fetch(url, { signal: AbortSignal.timeout(WAIT_MS), ...opts });
    return { status: res.status, text: await res.text() };
  }

  async function openSid() {
    const r = await req(base());
    assert.equal(r.status, 200);
    assert.ok(r.text.startsWith("0{"), r.text);
    return JSON.parse(r.text.slice(1)).sid;
  }

  /** Polls until a packet matching `pred` arrives, or the session is gone. */
  async function pollFor(sid, pred, what) {
    const deadline = Date.now() + WAIT_MS;
    const seen = [];
    while (Date.now() < deadline) {
      const r = await req(`${base()}&sid=${sid}`);
      if (r.status !== 200) return { gone: r };
      const packets = r.text.split("\x1e");
      seen.push(...packets);
      if (packets.includes("1")) return { gone: r };
      const hit = packets.find(pred);
      if (hit !== undefined) return { hit, seen };
    }
    throw new Error(`timed out polling for ${what}: ${JSON.stringify(seen).slice(0, 400)}`);
  }

  async function sessionGone(sid) {
    const r = await req(`${base()}&sid=${sid}`);
    return r.status === 400 || r.text.split("\x1e").includes("1");
  }

  async function healthy() {
    await assertHealthy(srv, ["websocket"]);
    await assertHealthy(srv, ["polling"]);
  }

  for (const [what, url, expect] of [
    ["EIO=3", (b) => b.replace("EIO=4", "EIO=3"), 400],
    ["no EIO", (b) => b.replace("EIO=4&", ""), 400],
    ["an unknown transport", (b) => b.replace("transport=polling", "transport=carrier-pigeon"), 400],
    ["an unknown sid", (b) => `${b}&sid=AAAAAAAAAAAAAAAAAAAA`, 400],
  ]) {
    test(`a handshake with ${what} is refused with ${expect}`, async () => {
      const r = await req(url(base()));
      assert.equal(r.status, expect, r.text);
      await healthy();
    });
  }

  test("a POST to an unknown sid is refused with 400", async () => {
    const r = await req(`${base()}&sid=AAAAAAAAAAAAAAAAAAAA`, { method: "POST", body: "40/demo,{}" });
    assert.equal(r.status, 400);
    await healthy();
  });

  for (const [what, body] of [
    ["garbage", "garbage"],
    ["an unknown packet type", "9"],
    ["an unknown Socket.IO packet type", "4Z"],
  ]) {
    test(`a POST of ${what} is refused and ends the session`, async () => {
      const sid = await openSid();
      const r = await req(`${base()}&sid=${sid}`, { method: "POST", body });
      assert.ok(r.status >= 400 || (await sessionGone(sid)), `status ${r.status}`);
      assert.ok(await sessionGone(sid), "the session is closed");
      await healthy();
    });
  }

  test("a POST far over the 1 MiB max payload gets 413 and ends the session", async () => {
    const sid = await openSid();
    // The server may answer 413 and close before the body is sent: fetch then fails (EPIPE).
    const r = await req(`${base()}&sid=${sid}`, { method: "POST", body: `4${"x".repeat(4 * 1024 * 1024)}` }).catch((e) => ({ status: 0, error: e }));
    assert.ok(r.status === 413 || r.status === 400 || r.status === 0, `status ${r.status}`);
    assert.ok(await sessionGone(sid));
    await healthy();
  });

  test("bad JSON in a CONNECT over polling gets a connect_error with a SPEC code", async () => {
    const sid = await openSid();
    const r = await req(`${base()}&sid=${sid}`, { method: "POST", body: "40/demo,{bad" });
    assert.equal(r.status, 200);
    const p = await pollFor(sid, (x) => x.startsWith("44/demo,") || x.startsWith("40/demo,"), "the CONNECT answer");
    if (!p.gone) {
      assert.ok(p.hit.startsWith("44/demo,"), p.hit);
      assert.ok(REFUSAL_CODES.includes(JSON.parse(p.hit.slice("44/demo,".length)).message), p.hit);
    }
    await healthy();
  });

  test("500 CONNECTs to random namespaces in one POST are all refused with unknown_tenant", async () => {
    const sid = await openSid();
    const names = Array.from({ length: 500 }, () => `/rnd-${randomBytes(6).toString("hex")}`);
    const r = await req(`${base()}&sid=${sid}`, { method: "POST", body: names.map((n) => `40${n},{}`).join("\x1e") });
    assert.equal(r.status, 200);
    const refused = new Set();
    const deadline = Date.now() + 15000;
    while (refused.size < names.length && Date.now() < deadline) {
      const g = await req(`${base()}&sid=${sid}`);
      assert.equal(g.status, 200, g.text);
      for (const p of g.text.split("\x1e")) {
        if (p.startsWith("44/rnd-")) {
          const comma = p.indexOf(",");
          assert.ok(["unknown_tenant", "rate_limited"].includes(JSON.parse(p.slice(comma + 1)).message), p);
          refused.add(p.slice(2, comma));
        }
      }
    }
    assert.equal(refused.size, names.length);
    await healthy();
  });

  test("a base64 binary packet over polling is refused or ignored, never a crash", async () => {
    const sid = await openSid();
    await req(`${base()}&sid=${sid}`, { method: "POST", body: "bAQIDBA==" });
    await healthy();
  });

  test("a connected polling session that sends a truncated event closes or keeps working", async () => {
    const sid = await openSid();
    await req(`${base()}&sid=${sid}`, { method: "POST", body: `40/demo,${JSON.stringify({ token })}` });
    const c = await pollFor(sid, (x) => x.startsWith('42/demo,["session"'), "session");
    assert.ok(c.hit, "connected");
    const bad = await req(`${base()}&sid=${sid}`, { method: "POST", body: '42/demo,["publish"' });
    if (bad.status === 200 && !(await sessionGone(sid))) {
      await req(`${base()}&sid=${sid}`, { method: "POST", body: '42/demo,5["publish",{"room":"hostile","event":"e","data":1}]' });
      const a = await pollFor(sid, (x) => x.startsWith("43/demo,5["), "the follow-up ack");
      if (!a.gone) assert.match(a.hit, /"ok":true/);
    }
    await healthy();
  });
});
