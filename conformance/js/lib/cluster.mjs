// The multi-node test rig: a private redis-server and nats-server (JetStream) on free
// ports, N `switchboard edge` processes and one `switchboard admin`, all on 127.0.0.1,
// torn down by `stop()`. Shared by every multi-node test:
//
//   const c = await new Cluster().edges(3).start();
//   const t = await c.tenant();            // a fresh tenant with an HS256 key
//   const s = c.connect(1, { auth: { token: t.token() } });
//   ...
//   await c.stop();
//
// Servers can be killed and restarted (`killNats`, `restartNats`, `killEdge`) for fault
// tests. Every wait has a timeout.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import jwt from "jsonwebtoken";
import { io } from "socket.io-client";

import { ALL_CAPS, BIN, WAIT_MS, nowS, unique } from "./server.mjs";

export function which(bin) {
  for (const d of [...(process.env.PATH || "").split(":"), "/usr/sbin", "/usr/bin", "/usr/local/bin"]) {
    const p = join(d, bin);
    if (d && existsSync(p)) return p;
  }
  throw new Error(`${bin} is not installed: run scripts/install-deps.sh`);
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

// A start-up deadline, not a measurement: it returns as soon as the check passes. Generous,
// since a loaded 2-core CI machine has been seen to need more than 15 s for an admin start.
async function waitFor(what, check, timeoutMs = 45000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function portOpen(port) {
  return new Promise((res) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });
}

// Each server process registers an exit hook so that none outlives the test process.
process.setMaxListeners(100);

class Proc {
  constructor(name, cmd, args, env = {}) {
    this.name = name;
    this.tail = "";
    this.child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", ...env } });
    this.all = [];
    const keep = (chunk) => {
      if (process.env.SWITCHBOARD_TEST_LOGS) process.stderr.write(`[${name}] ${chunk}`);
      this.tail = (this.tail + chunk).slice(-20000);
      if (env.KEEP_ALL_LOGS) this.all.push(chunk);
    };
    this.child.stdout.setEncoding("utf8").on("data", keep);
    this.child.stderr.setEncoding("utf8").on("data", keep);
    this.exited = new Promise((r) => this.child.once("exit", (code, signal) => r({ code, signal })));
    this.kill = () => {
      try {
        this.child.kill("SIGKILL");
      } catch {}
    };
    process.once("exit", this.kill);
  }
  get alive() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  async stop(signal = "SIGTERM", timeoutMs = 10000) {
    if (!this.alive) return;
    this.child.kill(signal);
    const t = setTimeout(this.kill, timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

export class Cluster {
  constructor() {
    this.nEdges = 1;
    this.adminToken = `cluster-${randomBytes(12).toString("hex")}`;
    this.edgeArgs = [];
    this.js = true;
  }
  /** Extra environment variables for every Switchboard process (edges and admin). */
  withEnv(env) {
    this.env = env;
    return this;
  }
  /** Whether nats-server runs with JetStream (default); `false`: a plain server. */
  jetstream(on) {
    this.js = on;
    return this;
  }
  /** How many edges to start. */
  edges(n) {
    this.nEdges = n;
    return this;
  }
  /** Extra flags for every edge. */
  withEdgeArgs(args) {
    this.edgeArgs = args;
    return this;
  }

  async start() {
    this.dir = mkdtempSync(join(tmpdir(), "sb-cluster-"));
    this.redisPort = await freePort();
    this.redis = new Proc("redis", which("redis-server"), [
      "--port", String(this.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", this.dir,
    ]);
    this.natsPort = await freePort();
    await this.restartNats();
    await waitFor("redis-server", () => portOpen(this.redisPort));
    this.redisUrl = `redis://127.0.0.1:${this.redisPort}`;
    this.natsUrl = `nats://127.0.0.1:${this.natsPort}`;

    this.adminPort = await freePort();
    this.admin = this.spawnRole("admin", ["admin", "--admin-addr", `127.0.0.1:${this.adminPort}`, "--admin-token", this.adminToken]);
    this.adminBase = `http://127.0.0.1:${this.adminPort}`;
    this.edgeList = [];
    for (let i = 0; i < this.nEdges; i++) this.edgeList.push(await this.startEdge(i));
    await waitFor("admin", async () => (await fetch(`${this.adminBase}/readyz`)).ok);
    for (const e of this.edgeList) await waitFor(`edge ${e.i}`, async () => (await fetch(`${e.base}/readyz`)).ok);
    return this;
  }

  spawnRole(name, args) {
    return new Proc(name, BIN, [...args, "--redis-url", this.redisUrl, "--nats-url", this.natsUrl, "--node-id", name], {
      SWITCHBOARD_LOG: process.env.SWITCHBOARD_LOG || "info",
      ...(this.env || {}),
    });
  }

  async startEdge(i, port, extra = []) {
    port = port ?? (await freePort());
    const proc = this.spawnRole(`edge${i}`, [
      "edge", "--edge-addr", `127.0.0.1:${port}`, "--handshake-rate-per-ip", "0",
      ...(extra.includes("--drain-seconds") ? [] : ["--drain-seconds", "1"]), ...this.edgeArgs, ...extra,
    ]);
    return { i, port, proc, base: `http://127.0.0.1:${port}` };
  }

  /** Starts edge `i` again (after `killEdge`) on the same port, with `extra` flags. */
  async restartEdge(i, extra = []) {
    this.edgeList[i] = await this.startEdge(i, this.edgeList[i].port, extra);
    await waitFor(`edge ${i}`, async () => (await fetch(`${this.edgeList[i].base}/readyz`)).ok);
  }

  /** A rolling-restart step: SIGTERM edge `i` (it drains), wait for it to exit, start it again. */
  async rollEdge(i) {
    const e = this.edgeList[i];
    e.proc.child.kill("SIGTERM");
    await Promise.race([e.proc.exited, new Promise((_, rej) => setTimeout(() => rej(new Error(`edge ${i} did not exit after SIGTERM`)), 15000))]);
    await this.restartEdge(i);
  }

  edge(i) {
    return this.edgeList[i];
  }

  /** Kills edge `i` like a crash. */
  killEdge(i, signal = "SIGKILL") {
    this.edgeList[i].proc.child.kill(signal);
    return this.edgeList[i].proc.exited;
  }

  async restartNats() {
    const js = this.js ? ["-js", "-sd", join(this.dir, "nats")] : [];
    this.nats = new Proc("nats", which("nats-server"), ["-a", "127.0.0.1", "-p", String(this.natsPort), ...js]);
    await waitFor("nats-server", () => portOpen(this.natsPort));
  }

  async killRedis() {
    this.redis.kill();
    await this.redis.exited;
  }

  async restartRedis() {
    this.redis = new Proc("redis", which("redis-server"), [
      "--port", String(this.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", this.dir,
    ]);
    await waitFor("redis-server", () => portOpen(this.redisPort));
  }

  async killNats() {
    this.nats.kill();
    await this.nats.exited;
  }

  /** An admin API call; resolves to `{status, body}`. */
  async api(method, path, body, token = this.adminToken) {
    const r = await fetch(`${this.adminBase}/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  /** A fresh tenant with an HS256 key; `token(claims)` mints its client tokens. */
  async tenant(policy = {}) {
    const id = unique("t").toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 60);
    const t = await this.api("POST", "/tenants", { id, policy });
    if (t.status !== 201) throw new Error(`creating tenant: ${JSON.stringify(t)}`);
    const k = await this.api("POST", `/tenants/${id}/keys`, { alg: "HS256" });
    if (k.status !== 201) throw new Error(`creating key: ${JSON.stringify(k)}`);
    const { kid, secret } = k.body;
    return {
      id,
      token: (claims = {}) => {
        const body = { aud: id, sub: unique("user"), exp: nowS() + 600, iat: nowS(), caps: ALL_CAPS, ...claims };
        for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
        return jwt.sign(body, secret, { algorithm: "HS256", header: { kid }, noTimestamp: true });
      },
    };
  }

  /** An unmodified socket.io-client socket to edge `i`, namespace `/<tenant>`. */
  connect(i, tenant, opts = {}) {
    this.sockets = this.sockets || new Set();
    const s = io(`${this.edgeList[i].base}/${tenant.id}`, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: WAIT_MS,
      ...opts,
    });
    this.sockets.add(s);
    return s;
  }

  /** A Prometheus counter's value on edge `i` (sum over series matching `labels`). */
  async metric(i, name, labels = {}) {
    const text = await (await fetch(`${this.edgeList[i].base}/metrics`)).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (!line.startsWith(name)) continue;
      const m = /^(\w+)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m || m[1] !== name) continue;
      const ok = Object.entries(labels).every(([k, v]) => (m[2] || "").includes(`${k}="${v}"`));
      if (ok) sum += Number(m[3]);
    }
    return sum;
  }

  async stop() {
    for (const s of this.sockets || []) s.disconnect();
    await Promise.all([...(this.edgeList || []).map((e) => e.proc.stop()), this.admin?.stop()]);
    this.nats?.kill();
    this.redis?.kill();
    await Promise.all([this.nats?.exited, this.redis?.exited]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  logs() {
    return [this.admin, ...(this.edgeList || []).map((e) => e.proc)].map((p) => `--- ${p.name}\n${p.tail}`).join("\n");
  }
}
