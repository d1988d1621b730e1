// Loaded by the test pages after the official socket.io-client bundle (`io` global).
// Keeps every socket a test opens in the page, records everything it sees, and lets the
// Node side wait for what it expects through `page.evaluate`, always with a timeout.
// Plain browser JavaScript: nothing here is transpiled or bundled.
(() => {
  "use strict";

  const sockets = new Map();
  let seq = 0;

  // Errors do not survive structured cloning to the Node side: keep what a test reads.
  const plain = (v) =>
    v instanceof Error
      ? { message: v.message, data: v.data === undefined ? null : v.data, type: v.type || null, description: v.description ? String(v.description) : null }
      : v;

  function entry(id) {
    const e = sockets.get(id);
    if (!e) throw new Error(`no socket #${id} in this page`);
    return e;
  }

  function record(e, event, args) {
    e.log.push({ event, args: args.map(plain), at: Date.now() });
    for (const w of [...e.waiters]) w();
  }

  window.H = {
    /** Opens a socket (no reconnection, its own Engine.IO connection); returns its id. */
    open(url, opts) {
      const id = ++seq;
      const s = window.io(url, { forceNew: true, reconnection: false, ...opts });
      const e = { s, log: [], taken: new Set(), waiters: new Set() };
      sockets.set(id, e);
      s.onAny((event, ...args) => record(e, event, args));
      for (const ev of ["connect", "connect_error", "disconnect"]) s.on(ev, (...args) => record(e, ev, args));
      s.io.on("open", () => {
        const engine = s.io.engine;
        record(e, "engine:open", [engine.transport.name]);
        engine.on("upgrade", (t) => record(e, "engine:upgrade", [t.name]));
      });
      s.io.on("error", (err) => record(e, "manager:error", [err]));
      return id;
    },

    /**
     * Resolves with the oldest recorded occurrence, not yet returned, of one of `events`
     * (`{event, args}`); rejects after `timeoutMs` with what the socket did see.
     */
    next(id, events, timeoutMs) {
      const e = entry(id);
      return new Promise((res, rej) => {
        let timer;
        const check = () => {
          const i = e.log.findIndex((x, i) => !e.taken.has(i) && events.includes(x.event));
          if (i < 0) return false;
          e.taken.add(i);
          e.waiters.delete(check);
          clearTimeout(timer);
          res(e.log[i]);
          return true;
        };
        if (check()) return;
        timer = setTimeout(() => {
          e.waiters.delete(check);
          rej(new Error(`timed out after ${timeoutMs} ms waiting for ${events.join(" | ")}; socket #${id} saw ${JSON.stringify(e.log.map((x) => [x.event, ...x.args]))}`));
        }, timeoutMs);
        e.waiters.add(check);
      });
    },

    /** Emits with an acknowledgement; resolves with the ack or `{timeout: true}`. */
    async ack(id, event, payload, timeoutMs) {
      const { s } = entry(id);
      try {
        return await s.timeout(timeoutMs).emitWithAck(event, payload);
      } catch (err) {
        return { timeout: true, error: String(err && err.message) };
      }
    },

    /** The Engine.IO transport in use now (`polling` | `websocket`), or null. */
    transport(id) {
      const { s } = entry(id);
      return s.io.engine && s.io.engine.transport ? s.io.engine.transport.name : null;
    },

    state(id) {
      const { s } = entry(id);
      return { connected: s.connected, id: s.id || null };
    },

    close(id) {
      const e = sockets.get(id);
      if (e) e.s.disconnect();
    },

    closeAll() {
      for (const e of sockets.values()) e.s.disconnect();
    },

    /** A `fetch` whose outcome is data: `{status, headers, body}` or `{error}` (e.g. blocked by CORS). */
    async fetchJson(url, init) {
      try {
        const r = await fetch(url, init);
        const text = await r.text();
        let body = text;
        try {
          body = JSON.parse(text);
        } catch {}
        return { status: r.status, headers: Object.fromEntries(r.headers.entries()), body };
      } catch (err) {
        return { error: String(err) };
      }
    },
  };
})();
