// Shared fixture of the JS conformance suite: starts `switchboard dev` on free ports,
// reads its banner, and gives the tests what they need to drive it with an unmodified
// socket.io-client (tokens minted here with the printed HS256 secret: the suites never
// depend on the admin API).
//
// Every wait in this module has a timeout: a misbehaving server fails a test, it never
// hangs the suite.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import jwt from "jsonwebtoken";
import { io } from "socket.io-client";

const here = dirname(fileURLToPath(import.meta.url));

/** The binary under test: `$SWITCHBOARD_BIN`, else the workspace's debug build. */
export const BIN = process.env.SWITCHBOARD_BIN
  ? resolve(process.env.SWITCHBOARD_BIN)
  : resolve(here, "../../../target/debug/switchboard");

/** The tenant `switchboard dev` creates, and its key id. */
export const TENANT = "demo";
export const KID = "demo-hs256";

/** Every right on every room. */
export const ALL_CAPS = Object.freeze({ "*": ["subscribe", "publish", "presence"] });

/** Both Engine.IO transports; tests that make sense on both run once per entry. */
export const TRANSPORTS = [["websocket"], ["polling"]];

/** How long any single expected thing may take before the test fails. */
export const WAIT_MS = Number(process.env.CONFORMANCE_WAIT_MS || 5000);

const nowS = () => Math.floor(Date.now() / 1000);

let uniq = 0;
/** A name no other test of this process uses (users, rooms). */
export function unique(prefix = "u") {
  uniq += 1;
  return `${prefix}-${process.pid}-${uniq}-${randomBytes(3).toString("hex")}`;
}

/**
 * Starts `switchboard dev` on free loopback ports and resolves once its banner is read.
 * Resolves to `{url, origin, edgeBase, adminBase, adminToken, secret, clientToken,
 * token(claims), connect(opts), stop(), logs()}`.
 */
export async function startServer({ timeoutMs = 30000, env = {} } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`switchboard binary not found at ${BIN}: build it with \`cargo build -p switchboard\` or set SWITCHBOARD_BIN`);
  }
  const adminToken = `conformance-${randomBytes(12).toString("hex")}`;
  const child = spawn(
    BIN,
    ["dev", "--edge-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--admin-token", adminToken],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SWITCHBOARD_LOG_FORMAT: "text", NO_COLOR: "1", ...env },
    },
  );
  // Never leave a server behind, whatever happens to this process.
  const killHard = () => {
    try {
      child.kill("SIGKILL");
    } catch {}
  };
  process.once("exit", killHard);

  // Keep the tail of stderr for diagnostics; draining it also keeps the pipe from filling.
  let stderrTail = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    if (process.env.SWITCHBOARD_TEST_LOGS) process.stderr.write(chunk);
    stderrTail = (stderrTail + chunk).slice(-20000);
  });

  const exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));

  const banner = await new Promise((res, rej) => {
    const fields = {};
    let buf = "";
    const timer = setTimeout(() => {
      killHard();
      rej(new Error(`no banner from switchboard dev within ${timeoutMs} ms; stderr:\n${stderrTail}`));
    }, timeoutMs);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        const m = /^([a-z .-]+):\s*(.+)$/i.exec(line);
        if (m) fields[m[1].trim().toLowerCase()] = m[2].trim();
        if (fields["socket.io"] && fields["demo key"] && fields["client token"]) {
          clearTimeout(timer);
          res(fields);
        }
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`switchboard dev exited early (code ${code}, signal ${signal}); stderr:\n${stderrTail}`));
    });
  });

  const url = banner["socket.io"];
  const u = new URL(url);
  const origin = u.origin;
  const secretMatch = /secret=(\S+)/.exec(banner["demo key"]);
  if (!secretMatch) throw new Error(`cannot read the demo key's secret from ${JSON.stringify(banner["demo key"])}`);
  const secret = secretMatch[1];

  /**
   * A signed client token for tenant `demo`. Defaults: a unique `sub`, `exp` 10 minutes
   * ahead, all rights on all rooms. A claim given as `undefined` is left out (so
   * `{caps: undefined}` gives the policy's default caps).
   */
  function token(claims = {}, { key = secret, kid = KID, algorithm = "HS256" } = {}) {
    const body = { aud: TENANT, sub: unique("user"), exp: nowS() + 600, caps: ALL_CAPS, ...claims };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    const header = kid === undefined ? {} : { kid };
    return jwt.sign(body, key, { algorithm, header, noTimestamp: true });
  }

  const sockets = new Set();
  /**
   * An unmodified socket.io-client socket on `/demo` (or `ns`), with no reconnection and
   * its own Engine.IO connection. Not awaited: use `connected()`/`refused()`.
   */
  function connect({ ns = `/${TENANT}`, transports = ["websocket"], ...opts } = {}) {
    const s = io(`${origin}${ns}`, {
      transports,
      forceNew: true,
      reconnection: false,
      timeout: WAIT_MS,
      ...opts,
    });
    sockets.add(s);
    return s;
  }

  async function stop() {
    for (const s of sockets) s.disconnect();
    sockets.clear();
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const t = setTimeout(killHard, 5000);
    await exited;
    clearTimeout(t);
    process.removeListener("exit", killHard);
  }

  return {
    url,
    origin,
    edgeBase: origin,
    adminBase: banner["admin"],
    /** The operator credential this server was started with (for suites that use the admin API). */
    adminToken,
    secret,
    clientToken: banner["client token"],
    token,
    connect,
    stop,
    logs: () => stderrTail,
    alive: () => child.exitCode === null && child.signalCode === null,
    /** Sends `sig` to the server process. */
    signal: (sig) => child.kill(sig),
    /** Resolves with `{code, signal}` once the process exits, or rejects after `timeoutMs`. */
    exited: (timeoutMs = WAIT_MS) =>
      Promise.race([
        exited,
        new Promise((_, rej) => setTimeout(() => rej(new Error(`server still running ${timeoutMs} ms later`)), timeoutMs).unref()),
      ]),
  };
}

/**
 * Resolves with the argument list of the next `event` on `emitter`, or rejects after
 * `timeoutMs`. Works for socket.io-client sockets and Node EventEmitters.
 */
export function once(emitter, event, timeoutMs = WAIT_MS) {
  return new Promise((res, rej) => {
    const handler = (...args) => {
      clearTimeout(timer);
      res(args);
    };
    const timer = setTimeout(() => {
      off(emitter, event, handler);
      rej(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    (emitter.once ? emitter.once : emitter.on).call(emitter, event, handler);
  });
}

function off(emitter, event, handler) {
  (emitter.off || emitter.removeListener).call(emitter, event, handler);
}

/** Resolves with the `session` payload once the socket is connected; rejects on `connect_error`. */
export function connected(socket, timeoutMs = WAIT_MS) {
  return new Promise((res, rej) => {
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("session", onSession);
      socket.off("connect_error", onError);
    };
    const onSession = (session) => {
      cleanup();
      if (!socket.connected) return rej(new Error("got `session` on a socket that is not connected"));
      res(session);
    };
    const onError = (err) => {
      cleanup();
      rej(new Error(`connect_error: ${err && err.message}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      rej(new Error(`timed out after ${timeoutMs} ms waiting for connect + session`));
    }, timeoutMs);
    socket.on("session", onSession);
    socket.on("connect_error", onError);
  });
}

/** Resolves with the `connect_error`'s message; rejects if the socket connects instead. */
export function refused(socket, timeoutMs = WAIT_MS) {
  return new Promise((res, rej) => {
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    };
    const onConnect = () => {
      cleanup();
      rej(new Error("connected, but a refusal was expected"));
    };
    const onError = (err) => {
      cleanup();
      socket.disconnect();
      res(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      socket.disconnect();
      rej(new Error(`timed out after ${timeoutMs} ms waiting for connect_error`));
    }, timeoutMs);
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Emits `event` with `payload` and resolves with the ack, or rejects after `timeoutMs`. */
export function ack(socket, event, payload, timeoutMs = WAIT_MS) {
  return socket.timeout(timeoutMs).emitWithAck(event, payload);
}

/**
 * Records every occurrence of `event` on `socket` (as argument lists) and lets a test
 * wait for the n-th one or for one matching a predicate, each with a timeout.
 */
export function collect(socket, event) {
  const items = [];
  const waiters = new Set();
  const check = () => {
    for (const w of [...waiters]) {
      const hit = w.pick();
      if (hit !== undefined) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.res(hit);
      }
    }
  };
  const handler = (...args) => {
    items.push(args);
    check();
  };
  socket.on(event, handler);
  const wait = (pick, what, timeoutMs) =>
    new Promise((res, rej) => {
      const w = { pick, res };
      w.timer = setTimeout(() => {
        waiters.delete(w);
        rej(new Error(`timed out after ${timeoutMs} ms waiting for ${what} of "${event}" (have ${items.length}: ${preview(items)})`));
      }, timeoutMs);
      waiters.add(w);
      check();
    });
  return {
    items,
    /** The first `n` occurrences, once there are that many. */
    count: (n, timeoutMs = WAIT_MS) => wait(() => (items.length >= n ? items.slice(0, n) : undefined), `${n} occurrences`, timeoutMs),
    /** The first occurrence whose arguments satisfy `pred`. */
    find: (pred, timeoutMs = WAIT_MS) => wait(() => items.find((a) => pred(...a)), "a matching occurrence", timeoutMs),
    stop: () => socket.off(event, handler),
  };
}

function preview(items) {
  const s = JSON.stringify(items);
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

/** Connects a socket with a fresh token (merged `claims`) and waits for its session. */
export async function open(srv, { claims = {}, transports = ["websocket"], ...opts } = {}) {
  const sub = claims.sub ?? unique("user");
  const s = srv.connect({ transports, auth: { token: srv.token({ ...claims, sub }) }, ...opts });
  const session = await connected(s);
  return { socket: s, sub, session };
}

/** The error ack `{ok: false, error: {code, message}}`, checked, or a thrown mismatch. */
export function errorCode(a) {
  if (!a || a.ok !== false || !a.error || typeof a.error.code !== "string" || typeof a.error.message !== "string") {
    throw new Error(`expected an error ack {ok: false, error: {code, message}}, got ${JSON.stringify(a)}`);
  }
  return a.error.code;
}

/** Compares two offsets: numerically when both are decimal strings, else as strings. */
export function compareOffsets(a, b) {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Proves the server still serves an ordinary client: connect, subscribe, publish with
 * echo, receive it, disconnect.
 */
export async function assertHealthy(srv, transports = ["websocket"]) {
  // A flood from this IP may have spent its handshake budget (`rate_limited`, refilled
  // within a second): that is the server defending itself, so wait it out, briefly.
  let socket;
  const deadline = Date.now() + 5000;
  for (;;) {
    const s = srv.connect({ transports, auth: { token: srv.token() } });
    try {
      await connected(s);
      socket = s;
      break;
    } catch (e) {
      s.disconnect();
      if (!/rate_limited/.test(e.message) || Date.now() > deadline) throw e;
      await sleep(200);
    }
  }
  try {
    const room = unique("health");
    const sub = await ack(socket, "subscribe", { room });
    if (!sub || sub.ok !== true) throw new Error(`health subscribe failed: ${JSON.stringify(sub)}`);
    const got = once(socket, "health");
    const pub = await ack(socket, "publish", { room, event: "health", data: { n: 1 }, echo: true });
    if (!pub || pub.ok !== true) throw new Error(`health publish failed: ${JSON.stringify(pub)}`);
    const [data, meta] = await got;
    if (!data || data.n !== 1 || !meta || meta.room !== room) throw new Error(`health delivery wrong: ${JSON.stringify([data, meta])}`);
  } finally {
    socket.disconnect();
  }
}

/** Lets wall-clock time pass (for expiry and rate tests; never to wait for a result). */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export { nowS };
