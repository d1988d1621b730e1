// Webhooks and the subscribe hook across 3 edges over real Redis and NATS, with a real
// HTTP receiver started here: every request's signature is checked; a room is occupied
// once when users on two edges join and vacated only when the last leaves; a SIGKILLed
// edge's room is vacated (once) after its liveness expires — no ghost "occupied"; the
// subscribe hook allows and refuses (with the tenant's reason) over socket.io-client.
import assert from "node:assert/strict";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";

import { Cluster } from "../lib/cluster.mjs";
import { ack, connected, sleep, unique } from "../lib/server.mjs";

const LIVENESS_SECONDS = 2;
const SECRETS = [randomBytes(24).toString("hex"), randomBytes(24).toString("hex")];
const HOOK_SECRET = randomBytes(24).toString("hex");

/** Whether `header` holds a v1 signature of `v1:<ts>:<body>` by `secret`. */
function signed(secret, header, ts, body) {
  const want = createHmac("sha256", secret).update(`v1:${ts}:`).update(body).digest();
  return (header || "").split(",").some((part) => {
    const hex = part.trim().replace(/^v1=/, "");
    const got = Buffer.from(hex, "hex");
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

/** The tenant's backend: webhooks at /hooks, the subscribe hook at /subscribe. */
class Backend {
  constructor() {
    this.events = [];
    this.asked = [];
    this.badSignatures = 0;
    this.waiters = new Set();
  }
  async start() {
    this.server = createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const ts = req.headers["x-switchboard-timestamp"];
        const sig = req.headers["x-switchboard-signature"];
        if (req.url === "/hooks") {
          // Both secrets sign while rotating.
          if (!SECRETS.every((s) => signed(s, sig, ts, body))) this.badSignatures++;
          for (const e of JSON.parse(body).events) this.events.push(e);
          res.end("{}");
          for (const w of this.waiters) w();
        } else if (req.url === "/subscribe") {
          if (!signed(HOOK_SECRET, sig, ts, body)) this.badSignatures++;
          const q = JSON.parse(body);
          this.asked.push(q);
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify(q.room.endsWith(":ok") ? { allow: true } : { allow: false, reason: "not on the list" }));
        } else {
          res.statusCode = 404;
          res.end();
        }
      });
    });
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }
  /** Resolves when `pred(events)` holds; rejects after `ms`. */
  until(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pred(this.events)) {
          clearTimeout(timer);
          this.waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${what}: not within ${ms} ms; got ${JSON.stringify(this.events.map((e) => [e.name, e.room]))}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }
  of(name, room) {
    return this.events.filter((e) => e.name === name && e.room === room);
  }
}

let c;
let t;
let backend;
before(async () => {
  backend = await new Backend().start();
  c = await new Cluster().edges(3).withEdgeArgs(["--state-liveness-seconds", String(LIVENESS_SECONDS), "--hooks-allow-private-networks"]).start();
  t = await c.tenant({
    webhooks: {
      url: `${backend.base}/hooks`,
      secrets: SECRETS,
      events: ["room.occupied", "room.vacated", "presence.member_added", "presence.member_removed",
        "connection.opened", "connection.closed", "session.ended"],
    },
    subscribe_hook: { url: `${backend.base}/subscribe`, secret: HOOK_SECRET, rooms: ["private:*"], cache_seconds: 0 },
  });
});
after(async () => {
  await c?.stop();
  backend?.server.close();
});

async function join(edge, room, sub = unique("u")) {
  const s = c.connect(edge, t, { auth: { token: t.token({ sub }) } });
  await connected(s);
  assert.deepEqual(await ack(s, "subscribe", { room }), { ok: true });
  return s;
}

describe("webhooks across 3 edges", () => {
  it("admin answers show the secrets redacted", async () => {
    const r = await c.api("GET", `/tenants/${t.id}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.policy.webhooks.secrets, ["<redacted>", "<redacted>"]);
    assert.equal(r.body.policy.subscribe_hook.secret, "<redacted>");
  });

  it("a room is occupied once, and vacated when its last subscriber on any edge leaves", async () => {
    const room = unique("room");
    const a = await join(0, room);
    const b = await join(1, room);
    await backend.until((ev) => ev.some((e) => e.name === "room.occupied" && e.room === room), 5000, "occupied");
    a.disconnect();
    await backend.until((ev) => ev.filter((e) => e.name === "presence.member_removed" && e.room === room).length === 1, 5000, "first leaves");
    assert.equal(backend.of("room.vacated", room).length, 0, "still occupied by the user on edge 1");
    b.disconnect();
    await backend.until((ev) => ev.some((e) => e.name === "room.vacated" && e.room === room), 5000, "vacated");
    assert.equal(backend.of("room.occupied", room).length, 1, "occupied once");
    assert.equal(backend.of("presence.member_added", room).length, 2);
    // Order per room: occupied before every member joined, vacated after every one did.
    const names = backend.events.filter((e) => e.room === room).map((e) => e.name);
    assert.equal(names[0], "room.occupied", JSON.stringify(names));
    assert.ok(names.indexOf("room.vacated") > names.lastIndexOf("presence.member_added"), JSON.stringify(names));
  });

  it("a killed edge's room is vacated after its liveness expires: no ghost occupied", async () => {
    const room = unique("room");
    // A watcher on edge 0 in another room: the tenant stays alive on the other edges.
    const w = await join(0, unique("other"));
    await join(2, room);
    await backend.until((ev) => ev.some((e) => e.name === "room.occupied" && e.room === room), 5000, "occupied");
    const killedAt = Date.now();
    await c.killEdge(2);
    await backend.until(
      (ev) => ev.some((e) => e.name === "room.vacated" && e.room === room),
      LIVENESS_SECONDS * 1000 + 8000,
      "vacated after the kill",
    );
    const took = Date.now() - killedAt;
    console.log(`room.vacated for the killed edge's room arrived ${took} ms after SIGKILL (liveness ${LIVENESS_SECONDS} s)`);
    assert.ok(took >= LIVENESS_SECONDS * 1000 - 500, `not before the liveness expired (${took} ms)`);
    assert.ok(took <= LIVENESS_SECONDS * 1000 + 3000, `soon after the liveness expired (${took} ms)`);
    assert.equal(backend.of("presence.member_removed", room).length, 1);
    // Give any duplicate a chance to show (there must be none), then check the admin view.
    await sleep(1000);
    assert.equal(backend.of("room.vacated", room).length, 1, "vacated once");
    const rooms = await c.api("GET", `/tenants/${t.id}/rooms`);
    assert.ok(!rooms.body.rooms.some((r) => r.name === room), "no ghost room");
    w.disconnect();
    await c.restartEdge(2);
  });

  it("a kick sends session.ended with its code, then connection.closed", async () => {
    const sub = unique("kicked");
    const s = c.connect(1, t, { auth: { token: t.token({ sub }) } });
    await connected(s);
    await backend.until((ev) => ev.some((e) => e.name === "connection.opened" && e.user === sub), 5000, "opened");
    const r = await c.api("DELETE", `/tenants/${t.id}/connections?sub=${encodeURIComponent(sub)}`);
    assert.ok(r.status < 300, JSON.stringify(r));
    await backend.until((ev) => ev.some((e) => e.name === "connection.closed" && e.user === sub), 5000, "closed");
    await backend.until((ev) => ev.some((e) => e.name === "session.ended" && e.user === sub), 5000, "session.ended");
    const ended = backend.events.find((e) => e.name === "session.ended" && e.user === sub);
    assert.equal(ended.code, "kicked");
    assert.ok(ended.connection_id);
  });

  it("every request was signed with both secrets and no event was sent twice", () => {
    assert.equal(backend.badSignatures, 0);
    const ids = backend.events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, "event ids are unique");
    assert.ok(backend.events.every((e) => e.tenant === t.id && typeof e.time_ms === "number"));
  });
});

describe("the subscribe hook", () => {
  it("allows, refuses with the tenant's reason, and is not asked outside its patterns", async () => {
    const sub = unique("u");
    const s = c.connect(1, t, { auth: { token: t.token({ sub, meta: { team: "red" } }) } });
    await connected(s);
    const before = backend.asked.length;
    assert.deepEqual(await ack(s, "subscribe", { room: "private:ok" }), { ok: true });
    const no = await ack(s, "subscribe", { room: "private:no" });
    assert.equal(no.ok, false);
    assert.equal(no.error.code, "forbidden");
    assert.equal(no.error.message, "not on the list");
    assert.deepEqual(await ack(s, "subscribe", { room: "public" }), { ok: true });
    const asked = backend.asked.slice(before);
    assert.deepEqual(asked.map((q) => q.room), ["private:ok", "private:no"]);
    assert.equal(asked[0].sub, sub);
    assert.deepEqual(asked[0].meta, { team: "red" });
    assert.ok(asked[0].connection_id);
    s.disconnect();
  });

  it("fails closed when the hook does not answer", async () => {
    const dead = await c.tenant({
      subscribe_hook: { url: "http://127.0.0.1:9/none", secret: HOOK_SECRET, rooms: ["*"], timeout_ms: 300 },
    });
    const s = c.connect(0, dead, { auth: { token: dead.token({}) } });
    await connected(s);
    const r = await ack(s, "subscribe", { room: "anything" });
    assert.equal(r.ok, false);
    assert.equal(r.error.code, "forbidden");
    s.disconnect();
  });
});
