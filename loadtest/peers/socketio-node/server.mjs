// Reference Socket.IO v4 server for Switchboard's load tests.
//
// It speaks the same client protocol as Switchboard (SPEC §3) for the parts the load
// generator uses, with the stock `socket.io` server and, for several processes, the
// official `@socket.io/redis-adapter`:
//   - namespace `/{tenant}`, `auth: {token}` (HS256 JWT, `aud` = tenant, `caps`) or
//     `auth: {ticket}` from `POST /v1/tickets`;
//   - `session` {id, recovered: false} right after connect;
//   - `subscribe` / `unsubscribe` {room} -> {ok}; `publish` {room, event, data, echo?}
//     -> {ok, id, offset}; deliveries (data, meta) with meta {room, id, offset, from, ts};
//   - refusals as `connect_error` with the SPEC code as message;
//   - `POST /v1/tenants/{t}/revocations` {sub} (with ADMIN_TOKEN): live sockets of that
//     sub get `session_end` {code: "token_revoked"} and are disconnected.
//
// Environment: PORT (3000), HOST (127.0.0.1), SECRET (required: the HS256 key's UTF-8
// bytes), REDIS_URL (optional: Redis adapter, shared offsets, tickets and revocations so
// that K processes form one service), ADMIN_TOKEN (optional: enables revocations),
// PUBLISH_RATE (per-connection publishes per second, same burst; default 50, 0 = off),
// MAX_MESSAGE_BYTES (default 65536), TICKET_TTL (seconds, default 30).
//
// Run K processes on PORT, PORT+1, ... with the same REDIS_URL; clients spread over them
// (WebSocket transport needs no sticky sessions).
import http from "node:http";
import crypto from "node:crypto";
import { Server } from "socket.io";
import jwt from "jsonwebtoken";

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? "127.0.0.1";
const SECRET = process.env.SECRET;
const REDIS_URL = process.env.REDIS_URL || "";
const ADMIN_TOKEN = process.env.ADMIN_TOKEN || "";
const PUBLISH_RATE = Number(process.env.PUBLISH_RATE ?? 50);
const MAX_MESSAGE_BYTES = Number(process.env.MAX_MESSAGE_BYTES ?? 65536);
const TICKET_TTL = Number(process.env.TICKET_TTL ?? 30);
if (!SECRET) {
  console.error("SECRET is required (the HS256 key)");
  process.exit(2);
}

const NODE_ID = crypto.randomBytes(4).toString("hex");
const TENANT_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ROOM_RE = /^[A-Za-z0-9_\-:.@/=]{1,200}$/;
const RESERVED = new Set([
  "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
  "error", "message", "ping", "pong",
]);

// ---- shared state: local, or in Redis when REDIS_URL is set ----
let redis = null;
const localOffsets = new Map();
const localTickets = new Map();
const localRevocations = new Map(); // `${tenant}\0${sub}` -> seconds
let idCounter = 0;

async function nextOffset(tenant, room) {
  if (redis) return String(await redis.incr(`sbnode:off:${tenant}:${room}`));
  const k = `${tenant}\0${room}`;
  const n = (localOffsets.get(k) ?? 0) + 1;
  localOffsets.set(k, n);
  return String(n);
}

async function putTicket(ticket, grant) {
  if (redis) {
    await redis.set(`sbnode:ticket:${ticket}`, JSON.stringify(grant), { EX: TICKET_TTL });
    return;
  }
  localTickets.set(ticket, { grant, expires: Date.now() + TICKET_TTL * 1000 });
}

async function takeTicket(ticket) {
  if (redis) {
    const v = await redis.getDel(`sbnode:ticket:${ticket}`);
    return v ? JSON.parse(v) : null;
  }
  const t = localTickets.get(ticket);
  if (!t) return null;
  localTickets.delete(ticket);
  return t.expires > Date.now() ? t.grant : null;
}

async function revokedAt(tenant, sub) {
  if (redis) {
    const v = await redis.hGet(`sbnode:rev:${tenant}`, sub);
    return v ? Number(v) : null;
  }
  return localRevocations.get(`${tenant}\0${sub}`) ?? null;
}

async function revoke(tenant, sub, at) {
  if (redis) await redis.hSet(`sbnode:rev:${tenant}`, sub, String(at));
  else localRevocations.set(`${tenant}\0${sub}`, at);
}

setInterval(() => {
  const now = Date.now();
  for (const [k, t] of localTickets) if (t.expires <= now) localTickets.delete(k);
}, 10_000).unref();

// ---- credentials ----
function verifyToken(token, tenant) {
  let claims;
  try {
    claims = jwt.verify(token, SECRET, { algorithms: ["HS256"], audience: tenant, clockTolerance: 30 });
  } catch (e) {
    throw new Error(e.name === "TokenExpiredError" ? "token_expired" : "invalid_token");
  }
  if (typeof claims.sub !== "string" || typeof claims.exp !== "number") throw new Error("invalid_token");
  return { sub: claims.sub, caps: claims.caps ?? {}, iat: claims.iat ?? null, exp: claims.exp };
}

function allowed(caps, room, right) {
  for (const [pattern, rights] of Object.entries(caps)) {
    if (!Array.isArray(rights) || !rights.includes(right)) continue;
    if (pattern === "*" || pattern === room) return true;
    if (pattern.endsWith("*") && room.startsWith(pattern.slice(0, -1))) return true;
  }
  return false;
}

const userRoom = (sub) => `~u:${sub}`;

// ---- HTTP: tickets, revocations, health ----
function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
      if (body.length > 65536) reject(new Error("too large"));
    });
    req.on("end", () => {
      try {
        resolve(body ? JSON.parse(body) : {});
      } catch (e) {
        reject(e);
      }
    });
  });
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function bearer(req) {
  const h = req.headers.authorization ?? "";
  return h.startsWith("Bearer ") ? h.slice(7) : null;
}

async function handleHttp(req, res) {
  const url = new URL(req.url, "http://x");
  if (req.method === "GET" && url.pathname === "/healthz") return send(res, 200, { ok: true });
  if (req.method === "POST" && url.pathname === "/v1/tickets") {
    const token = bearer(req);
    if (!token) return send(res, 401, { code: "missing_credentials" });
    let tenant = "demo";
    try {
      tenant = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()).aud ?? "demo";
    } catch {
      return send(res, 401, { code: "invalid_token" });
    }
    try {
      const id = verifyToken(token, tenant);
      const at = await revokedAt(tenant, id.sub);
      if (at !== null && (id.iat === null || id.iat <= at)) return send(res, 401, { code: "token_revoked" });
      const ticket = crypto.randomBytes(24).toString("base64url");
      await putTicket(ticket, { tenant, ...id });
      return send(res, 201, { ticket, expires_in: TICKET_TTL });
    } catch (e) {
      return send(res, 401, { code: e.message });
    }
  }
  const m = /^\/v1\/tenants\/([a-z0-9][a-z0-9-]{0,62})\/revocations$/.exec(url.pathname);
  if (req.method === "POST" && m && ADMIN_TOKEN) {
    if (bearer(req) !== ADMIN_TOKEN) return send(res, 401, { code: "unauthorized" });
    const tenant = m[1];
    let body;
    try {
      body = await readJson(req);
    } catch {
      return send(res, 400, { code: "invalid_body" });
    }
    if (typeof body.sub !== "string") return send(res, 400, { code: "invalid_body" });
    const at = Math.floor(Date.now() / 1000);
    await revoke(tenant, body.sub, at);
    const nsp = io.of(`/${tenant}`);
    nsp.to(userRoom(body.sub)).emit("session_end", { code: "token_revoked", message: "the token was revoked" });
    nsp.in(userRoom(body.sub)).disconnectSockets(true);
    return send(res, 201, { id: crypto.randomUUID(), sub: body.sub, issued_before: at });
  }
  return send(res, 404, { code: "not_found" });
}

const httpServer = http.createServer((req, res) => {
  // Socket.IO handles its own path; everything else is ours.
  if (req.url.startsWith("/socket.io/")) return;
  handleHttp(req, res).catch((e) => send(res, 500, { code: "internal", detail: String(e) }));
});

const io = new Server(httpServer, {
  serveClient: false,
  maxHttpBufferSize: Math.max(1e6, MAX_MESSAGE_BYTES * 2),
  cors: { origin: true },
});

if (REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pubClient = createClient({ url: REDIS_URL });
  const subClient = pubClient.duplicate();
  redis = pubClient.duplicate();
  for (const c of [pubClient, subClient, redis]) c.on("error", (e) => console.error("redis:", e.message));
  await Promise.all([pubClient.connect(), subClient.connect(), redis.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

const tenants = io.of((name, _auth, next) => next(null, TENANT_RE.test(name.slice(1))));

tenants.use(async (socket, next) => {
  const tenant = socket.nsp.name.slice(1);
  const auth = socket.handshake.auth ?? {};
  try {
    let id;
    if (typeof auth.token === "string") id = verifyToken(auth.token, tenant);
    else if (typeof auth.ticket === "string") {
      const g = await takeTicket(auth.ticket);
      if (!g || g.tenant !== tenant) throw new Error("ticket_invalid");
      id = g;
    } else throw new Error("missing_credentials");
    const at = await revokedAt(tenant, id.sub);
    if (at !== null && (id.iat === null || id.iat <= at)) throw new Error("token_revoked");
    socket.data.sub = id.sub;
    socket.data.caps = id.caps;
    next();
  } catch (e) {
    next(new Error(e.message && /^[a-z_]+$/.test(e.message) ? e.message : "unavailable"));
  }
});

tenants.on("connection", (socket) => {
  const nsp = socket.nsp;
  const { sub, caps } = socket.data;
  const tenant = nsp.name.slice(1);
  let tokens = PUBLISH_RATE;
  let last = Date.now();
  socket.join(userRoom(sub));
  socket.emit("session", { id: crypto.randomBytes(12).toString("base64url"), recovered: false });

  const fail = (ack, code, message = code) => typeof ack === "function" && ack({ ok: false, error: { code, message } });

  socket.on("subscribe", (p, ack) => {
    const room = p?.room;
    if (typeof room !== "string" || !ROOM_RE.test(room)) return fail(ack, "invalid_room");
    if (!allowed(caps, room, "subscribe")) return fail(ack, "forbidden");
    socket.join(room);
    if (typeof ack === "function") ack({ ok: true });
  });

  socket.on("unsubscribe", (p, ack) => {
    const room = p?.room;
    if (typeof room !== "string" || !ROOM_RE.test(room)) return fail(ack, "invalid_room");
    socket.leave(room);
    if (typeof ack === "function") ack({ ok: true });
  });

  socket.on("publish", async (p, ack) => {
    const room = p?.room;
    const event = p?.event;
    if (typeof room !== "string" || !ROOM_RE.test(room)) return fail(ack, "invalid_room");
    if (typeof event !== "string" || event.length < 1 || event.length > 128 || RESERVED.has(event)) {
      return fail(ack, "invalid_event");
    }
    if (!allowed(caps, room, "publish")) return fail(ack, "forbidden");
    if (JSON.stringify(p.data ?? null).length > MAX_MESSAGE_BYTES) return fail(ack, "payload_too_large");
    if (PUBLISH_RATE > 0) {
      const now = Date.now();
      tokens = Math.min(PUBLISH_RATE, tokens + ((now - last) * PUBLISH_RATE) / 1000);
      last = now;
      if (tokens < 1) return fail(ack, "rate_limited");
      tokens -= 1;
    }
    let offset;
    try {
      offset = await nextOffset(tenant, room);
    } catch {
      return fail(ack, "unavailable");
    }
    const id = `${NODE_ID}-${(++idCounter).toString(36)}`;
    const meta = { room, id, offset, from: sub, ts: Date.now() };
    if (p.echo === true) nsp.to(room).emit(event, p.data ?? null, meta);
    else socket.to(room).emit(event, p.data ?? null, meta);
    if (typeof ack === "function") ack({ ok: true, id, offset });
  });
});

httpServer.listen(PORT, HOST, () => {
  const addr = httpServer.address();
  console.log(`socket.io: http://${addr.address}:${addr.port}/demo`);
  console.log(`pid: ${process.pid}`);
  console.log(`adapter: ${REDIS_URL ? "redis" : "in-memory"}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => {
  io.close();
  process.exit(0);
});
