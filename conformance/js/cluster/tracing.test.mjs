// SPEC §7: OpenTelemetry traces over OTLP. Three edges export to a real OTLP/HTTP
// receiver (PyPI `oteltap`); one publish and its deliveries on every node are one trace,
// with each node's `deliver` span a child of the publish span; an admin revocation and its
// handling on every node are one trace too. Spans carry codes, never credentials.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";

import { Cluster, freePort, which } from "../lib/cluster.mjs";
import { ack, connected, once, unique, WAIT_MS } from "../lib/server.mjs";

/** A running `oteltap`: every span it received, and a way to await spans. */
class Receiver {
  async start() {
    this.port = await freePort();
    this.spans = [];
    this.metrics = [];
    this.waiters = new Set();
    this.child = spawn(which("oteltap"), ["--port", String(this.port)], { stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((r) => this.child.once("exit", r));
    let ready;
    const listening = new Promise((r) => (ready = r));
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      if (line.startsWith("Listening")) return ready();
      if (!line.startsWith("{")) return;
      let s;
      try {
        s = JSON.parse(line);
      } catch {
        return;
      }
      if (s.name && (s.gauge || s.sum || s.histogram)) {
        this.metrics.push(s);
        for (const w of this.waiters) w();
        return;
      }
      if (!s.spanId) return;
      s.attrs = Object.fromEntries((s.attributes || []).map((a) => [a.key, Object.values(a.value)[0]]));
      this.spans.push(s);
      for (const w of this.waiters) w();
    });
    await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("oteltap did not start")), 15000))]);
    return this;
  }
  get endpoint() {
    return `http://127.0.0.1:${this.port}`;
  }
  /** Resolves with `pick(spans)` once it is truthy, or rejects after `ms`. */
  until(pick, what, ms = 3 * WAIT_MS) {
    return new Promise((res, rej) => {
      const check = () => {
        const v = pick(this.spans);
        if (v) {
          this.waiters.delete(check);
          clearTimeout(t);
          res(v);
        }
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        rej(new Error(`${what}: not received; spans: ${JSON.stringify(this.spans.map((s) => [s.name, s.traceId, s.attrs.node]))}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }
  async stop() {
    this.child.kill();
    await this.exited;
  }
}

let rx;
let c;
let t;
before(async () => {
  rx = await new Receiver().start();
  c = await new Cluster()
    .edges(3)
    .withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint, OTEL_BSP_SCHEDULE_DELAY: "100", OTEL_METRIC_EXPORT_INTERVAL: "500", OTEL_SERVICE_NAME: "switchboard-test", SWITCHBOARD_LOG_FORMAT: "json", KEEP_ALL_LOGS: "1" })
    .start();
  t = await c.tenant();
});
after(async () => {
  await c?.stop();
  await rx?.stop();
});

describe("OpenTelemetry traces across nodes", () => {
  it("one publish and its deliveries on three edges are one trace, each delivery a child of the publish", async () => {
    const room = unique("traced");
    const subs = [];
    for (let i = 0; i < 3; i++) {
      const s = c.connect(i, t, { auth: { token: t.token() } });
      await connected(s);
      assert.deepEqual(await ack(s, "subscribe", { room }), { ok: true });
      subs.push(s);
    }
    const got = subs.map((s) => once(s, "traced"));
    const a = await ack(subs[0], "publish", { room, event: "traced", data: 1, echo: true });
    assert.equal(a.ok, true);
    await Promise.all(got);

    const publish = await rx.until((all) => all.find((s) => s.name === "publish" && s.attrs.room === room), "the publish span");
    assert.equal(publish.attrs.node, "edge0");
    assert.equal(publish.attrs.code, "ok");
    const delivers = await rx.until((all) => {
      const d = all.filter((s) => s.name === "deliver" && s.attrs.kind === "event" && s.attrs.room === room);
      return new Set(d.map((s) => s.attrs.node)).size === 3 && d;
    }, "deliver spans from three nodes");
    for (const d of delivers) {
      assert.equal(d.traceId, publish.traceId, `${d.attrs.node}: same trace as the publish`);
      assert.equal(d.parentSpanId, publish.spanId, `${d.attrs.node}: a child of the publish span`);
    }
    assert.deepEqual(new Set(delivers.map((d) => d.attrs.node)), new Set(["edge0", "edge1", "edge2"]));

    // The delivery latency histogram of every node carries the publish's trace id as an
    // exemplar, in the OpenMetrics exposition and over OTLP.
    for (let i = 0; i < 3; i++) {
      const text = await (await fetch(`${c.edge(i).base}/metrics`)).text();
      assert.match(text, new RegExp(`switchboard_delivery_latency_seconds_bucket\\{le="[^"]+"\\} \\d+ # \\{trace_id="${publish.traceId}"\\}`), `edge${i}: an exemplar with the trace id`);
    }
    const traceBytes = Buffer.from(publish.traceId, "hex").toString("base64");
    await rx.until(
      // oteltap prints ids in hex, as for spans; protobuf's JSON would print base64.
      (all) =>
        rx.metrics.some((m) => {
          if (m.name !== "switchboard_delivery_latency_seconds") return false;
          const ids = m.histogram.dataPoints.flatMap((p) => (p.exemplars || []).map((e) => e.traceId));
          return ids.includes(publish.traceId) || ids.includes(traceBytes);
        }),
      "the delivery latency histogram over OTLP with the publish's trace id as an exemplar",
    );
  });

  it("the Prometheus metrics are pushed over OTLP too: sums, gauges, histograms", async () => {
    const m = await rx.until((all) => {
      const by = (n) => rx.metrics.find((x) => x.name === n);
      const got = [by("switchboard_handshakes"), by("switchboard_connections"), by("switchboard_handshake_duration_seconds")];
      return got.every(Boolean) && got;
    }, "OTLP metrics from the edges");
    const [handshakes, connections, duration] = m;
    assert.equal(handshakes.sum.isMonotonic, true);
    assert.ok(handshakes.sum.dataPoints.some((p) => p.attributes.some((a) => a.key === "code" && a.value.stringValue === "accepted")));
    assert.ok(connections.gauge.dataPoints.length > 0);
    assert.equal(duration.unit, "seconds");
    const p = duration.histogram.dataPoints[0];
    assert.equal(p.bucketCounts.length, p.explicitBounds.length + 1);
  });

  it("a revocation and its handling on every edge are one trace", async () => {
    const sub = unique("user");
    const token = t.token({ sub });
    const s = c.connect(1, t, { auth: { token } });
    await connected(s);
    const ended = once(s, "session_end");
    const r = await c.api("POST", `/tenants/${t.id}/revocations`, { sub });
    assert.equal(r.status, 201);
    assert.equal((await ended)[0].code, "token_revoked");
    const request = await rx.until(
      (all) => all.find((x) => x.name === "POST /v1/tenants/{t}/revocations"),
      "the admin request span",
    );
    assert.equal(request.attrs["http.response.status_code"], "201");
    const handled = await rx.until((all) => {
      const h = all.filter((x) => x.name === "revoked" && x.traceId === request.traceId);
      return new Set(h.map((x) => x.attrs.node)).size === 3 && h;
    }, "the revocation handled on three edges in the request's trace");
    for (const h of handled) assert.equal(h.parentSpanId, request.spanId);
    // Spans never carry a credential.
    assert.ok(!JSON.stringify(rx.spans).includes(token), "no token in any span");
  });

  it("store calls are spans of the handshake that made them", async () => {
    const s = c.connect(1, t, { auth: { token: t.token({ sub: unique("stored") }) } });
    await connected(s);
    const [hs, open] = await rx.until((all) => {
      for (const o of all.filter((x) => x.name === "store.open_connection")) {
        const h = all.find((x) => x.spanId === o.parentSpanId && x.name === "handshake" && x.attrs.code === "accepted");
        if (h) return [h, o];
      }
      return null;
    }, "a store call admitting a connection, as a child of its handshake span");
    assert.equal(open.traceId, hs.traceId);
    assert.equal(open.attrs["db.system"], "redis");
    s.close();
  });

  it("a refused handshake's span has its code and no credential", async () => {
    const bad = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2VjcmV0LXNpZ25hdHVyZQ";
    const s = c.connect(2, t, { auth: { token: bad } });
    const err = await once(s, "connect_error");
    assert.equal(err[0].message, "invalid_token");
    const span = await rx.until(
      (all) => all.find((x) => x.name === "handshake" && x.attrs.code === "invalid_token" && x.attrs.node === "edge2"),
      "the refused handshake's span",
    );
    assert.equal(span.attrs.tenant, t.id);
    assert.ok(!JSON.stringify(rx.spans).includes(bad), "no token in any span");
    // The JSON log line of the refusal carries the same trace id.
    const lines = c.edge(2).proc.all.join("").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    const logged = lines.find((l) => l.fields?.message === "handshake refused" && l.span?.trace_id === span.traceId);
    assert.ok(logged, `a JSON log line with trace_id ${span.traceId}`);
    assert.equal(logged.fields.code, "invalid_token");
  });
});
