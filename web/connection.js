// A live connection to a market-dashboard server, for this page or any other: WebSocket
// first (brotli or deflate frames), falling back to Server-Sent Events, or the transport
// asked for; reconnecting with exponential backoff and jitter, resuming from the last seq.
//
//   import { connect } from "./connection.js";
//   const conn = connect({
//     query: { symbols: "AAPL,MSFT" },     // and max_hz; null values are left out
//     since: () => lastSeq,                // where to resume after a drop (null: a snapshot)
//     onMessage: (msg) => { ... },         // every snapshot, batch, pong and error, in order
//     onStatus: (s) => { ... },            // {state, attempt, transport, encoding}
//   });
//   conn.stop();
//
// Messages arrive decoded (JSON objects). Deduplication and gap counting by seq are the
// caller's: it knows what it has applied.

import { inflateSync, strFromU8 } from "./vendor/fflate.mjs";

const MAX_BACKOFF_MS = 15000;
// On the SSE fallback, how often to see whether WebSocket gets through again.
const UPGRADE_AFTER_MS = 60000;

/** `path` on the server at `base`, with `query` (null values left out) and `token`. */
export function serverUrl(path, query, { base = location.href, token = null } = {}) {
  const url = new URL(path, base);
  for (const [k, v] of Object.entries(query)) if (v !== null) url.searchParams.set(k, String(v));
  if (token) url.searchParams.set("token", token);
  return url;
}

function supports(format) {
  try { new DecompressionStream(format); return true; } catch { return false; }
}

async function decompress(buffer, format) {
  const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream(format));
  return new Response(stream).text();
}

// Each opener calls on.message in order, on.open once connected, on.down when lost, and
// returns a function that closes it.

function openWebSocket(url, on, encoding) {
  const format = encoding === "br" ? "brotli" : "deflate-raw";
  url.searchParams.set("encoding", encoding);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  // Deflate frames are inflated synchronously (fflate): a busy tab would otherwise queue
  // every frame behind several task hops of the stream machinery. Brotli has no small
  // synchronous decoder, so it takes DecompressionStream, in order.
  let chain = Promise.resolve();
  let opened = false;
  ws.onopen = () => { opened = true; on.open("ws", encoding); };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      on.bytes(e.data.length, e.data.length);
      chain = chain.then(() => on.message(JSON.parse(e.data)));
      return;
    }
    const wire = e.data.byteLength;
    if (encoding === "deflate") {
      const json = strFromU8(inflateSync(new Uint8Array(e.data)));
      on.bytes(wire, json.length);
      on.message(JSON.parse(json));
      return;
    }
    const text = decompress(e.data, format); // started now, in parallel; applied in order
    chain = chain.then(() => text).then((json) => {
      on.bytes(wire, json.length);
      on.message(JSON.parse(json));
    });
  };
  ws.onclose = (e) => on.down(opened, e.code);
  return () => { ws.onclose = null; ws.close(); };
}

function openEventSource(url, on) {
  const es = new EventSource(url);
  let opened = false;
  const take = (e) => {
    on.bytes(e.data.length, e.data.length); // decoded size: the browser hides the wire
    on.message(JSON.parse(e.data));
  };
  es.onopen = () => { opened = true; on.open("sse", "json"); };
  es.addEventListener("batch", take);
  es.addEventListener("snapshot", take);
  // EventSource would reconnect on its own, without backoff or attempt counts: we do it.
  es.onerror = () => { es.close(); on.down(opened, null); };
  return () => es.close();
}

function openStream(url, on) {
  const controller = new AbortController();
  let opened = false;
  (async () => {
    const response = await fetch(url, { signal: controller.signal, cache: "no-store" });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    opened = true;
    on.open("stream", "json");
    // Pulling at our own pace: the server sees backpressure when this tab is busy.
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        on.bytes(line.length + 1, line.length + 1);
        const msg = JSON.parse(line);
        if (msg.type !== "heartbeat") on.message(msg);
        else on.heartbeat();
      }
    }
  })().then(
    () => on.down(opened, null),
    () => { if (!controller.signal.aborted) on.down(opened, null); },
  );
  return () => controller.abort();
}

// Each transport's path and the query parameter it resumes with.
const TRANSPORTS = {
  ws: { path: "ws", since: "since", open: openWebSocket },
  sse: { path: "sse", since: "last_event_id", open: openEventSource },
  stream: { path: "stream", since: "since", open: openStream },
};

/**
 * Connect, and stay connected until stop().
 *
 * @param {object} options
 * @param {string} [options.base] the server's URL (default: this page's)
 * @param {object} [options.query] symbols, max_hz: the subscription (null values left out)
 * @param {string|null} [options.token] sent as `token=`: browsers cannot set a header on
 *   EventSource or WebSocket
 * @param {string|null} [options.transport] "ws", "sse" or "stream" only; default: WebSocket,
 *   then SSE after two WebSocket connects fail while the server answers plain HTTP (a
 *   server that is down is waited for, not fallen back from); back to WebSocket when the
 *   fallback stream drops, or when a WebSocket tried every `upgradeAfterMs` opens
 * @param {string|null} [options.encoding] WebSocket frames: "br", "deflate" or "json";
 *   default br where DecompressionStream('brotli') exists, deflate otherwise
 * @param {() => number|null} [options.since] the last seq applied, to resume from
 * @param {(msg: object) => void} options.onMessage
 * @param {(status: {state: string, attempt: number, transport: string|null,
 *   encoding: string|null}) => void} [options.onStatus]
 * @param {(wireBytes: number, jsonBytes: number) => void} [options.onBytes]
 * @param {() => void} [options.onHeartbeat] an idle stream's heartbeat arrived
 * @param {number} [options.upgradeAfterMs] on the SSE fallback, how often to try WebSocket
 * @returns {{stop: () => void}}
 */
export function connect({
  base = location.href, query = {}, token = null, transport = null, encoding = null,
  since = () => null, onMessage, onStatus = () => {}, onBytes = () => {},
  onHeartbeat = () => {}, upgradeAfterMs = UPGRADE_AFTER_MS,
}) {
  const forced = TRANSPORTS[transport] ? transport : null;
  const wsEncoding = encoding || (supports("brotli") ? "br" : "deflate");
  const status = { state: "connecting", attempt: 0, transport: null, encoding: null };
  let kind = forced || "ws";
  let close = null;
  let timer = 0;
  let wsFailures = 0;
  let upgradeTimer = 0;
  let stopped = false;

  const report = (state) => { status.state = state; onStatus({ ...status }); };

  const url = (t) => serverUrl(
    TRANSPORTS[t].path, { ...query, [TRANSPORTS[t].since]: since() ?? null }, { base, token },
  );

  function open() {
    report(status.attempt ? "reconnecting" : "connecting");
    close = TRANSPORTS[kind].open(url(kind), {
      open: (t, enc) => {
        status.transport = t; status.encoding = enc; status.attempt = 0;
        if (t === "ws") wsFailures = 0;
        else if (!forced) upgradeLater();
        report("live");
      },
      message: onMessage,
      bytes: onBytes,
      heartbeat: onHeartbeat,
      down,
    }, wsEncoding);
  }

  /** Does the server answer plain HTTP? Any status will do: it is WebSocket that fails. */
  async function httpGetsThrough() {
    try {
      await fetch(serverUrl("healthz", {}, { base }), { cache: "no-store" });
      return true;
    } catch {
      return false;
    }
  }

  async function down(opened, code) {
    close = null;
    clearTimeout(upgradeTimer);
    if (stopped) return;
    if (kind === "ws" && !opened && !forced && await httpGetsThrough() && ++wsFailures >= 2) {
      kind = "sse"; // the server answers, but WebSocket does not get through (a proxy?)
    } else if (kind !== "ws" && !forced) {
      kind = "ws"; // a fallback stream dropped: the server may be back, WebSocket and all
      wsFailures = 0;
    }
    if (stopped) return;
    if (code === 1008) console.warn("server refused the connection (policy)");
    status.attempt += 1;
    report("reconnecting");
    // Exponential backoff with equal jitter (half the delay fixed, half random), so
    // reconnecting pages spread out; 1013 (try again later) starts higher.
    const delay = Math.min(MAX_BACKOFF_MS, (code === 1013 ? 2000 : 250) * 2 ** (status.attempt - 1));
    timer = setTimeout(open, delay / 2 + Math.random() * delay / 2);
  }

  /** Live on the fallback: now and then, see whether WebSocket gets through after all (the
   * proxy was fixed, the page moved networks); if it opens, switch to it, resuming. */
  function upgradeLater() {
    clearTimeout(upgradeTimer);
    upgradeTimer = setTimeout(() => {
      const probe = new WebSocket(Object.assign(url("ws"), {
        protocol: new URL(base).protocol === "https:" ? "wss:" : "ws:",
      }));
      probe.onopen = () => {
        probe.close();
        if (stopped || kind === "ws") return;
        if (close) close();
        kind = "ws";
        wsFailures = 0;
        open();
      };
      probe.onerror = () => { if (!stopped && kind !== "ws") upgradeLater(); };
    }, upgradeAfterMs);
  }

  open();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(upgradeTimer);
      if (close) close();
      close = null;
    },
  };
}
