// The dashboard page: a live watchlist and a candlestick chart fed by WebSocket (brotli or
// deflate frames), Server-Sent Events or an NDJSON HTTP stream, with resume by seq
// (the connection itself is web/connection.js, which other pages can import too).
//
// State lives per symbol in a Map and is drawn once per animation frame; messages only
// update state. Every feed string is rendered with textContent, never as HTML.

import {
  createChart, CandlestickSeries, HistogramSeries,
} from "./vendor/lightweight-charts.standalone.production.mjs";
import { connect, serverUrl } from "./connection.js";

const params = new URLSearchParams(location.search);
// A page opened with ?token=... (a server with auth on) passes it on to the streams and the
// API: EventSource and browser WebSockets cannot send an Authorization header.
const token = params.get("token");
const STALE_MS = 3000;
const FLASH_MS = 350;
const LATENCY_SAMPLES = 4096;

// ---------------------------------------------------------------------------------------
// Market state

/** @type {Map<string, {sym:string,last:number,open:number,bid:number,ask:number,volume:number,
 *   ts:number,dir:number,flashAt:number,dirty:boolean,row:HTMLTableRowElement|null}>} */
const quotes = new Map();
const view = {
  lastSeq: null, gaps: 0, duplicates: 0, applied: 0, resets: 0,
  selected: params.get("symbol"), interval: "1s",
  lastMessageAt: 0, transport: null, encoding: null, state: "connecting", attempt: 0,
};
// Counters for the status bar, turned into rates once a second.
const counters = { msgs: 0, ticks: 0, wireBytes: 0, jsonBytes: 0, busyMs: 0 };
const latencies = new Float64Array(LATENCY_SAMPLES);
let latencyCount = 0;
const pendingLatency = []; // tick ts applied since the last frame
let structureDirty = true;

function quote(sym) {
  let q = quotes.get(sym);
  if (!q) {
    q = { sym, last: NaN, open: NaN, bid: NaN, ask: NaN, volume: 0, ts: 0, dir: 0,
          flashAt: 0, dirty: true, row: null };
    quotes.set(sym, q);
    structureDirty = true;
  }
  return q;
}

function applySnapshot(msg) {
  const q = msg.quotes;
  if (msg.reset) {
    view.resets += 1;
    for (const s of quotes.values()) { s.volume = 0; s.dirty = true; }
  }
  for (let i = 0; i < q.sym.length; i++) {
    const s = quote(q.sym[i]);
    s.last = q.price[i]; s.bid = q.bid[i]; s.ask = q.ask[i]; s.ts = q.ts[i];
    s.open = q.open[i]; s.volume = q.volume[i]; s.dirty = true;
  }
  if (!view.selected && q.sym.length) view.selected = q.sym[0];
  chart.reseed();
}

function applyBatch(msg) {
  const t = msg.ticks;
  const now = Date.now();
  for (let i = 0; i < t.sym.length; i++) {
    const s = quote(t.sym[i]);
    const price = t.price[i];
    if (!Number.isNaN(s.last) && price !== s.last) {
      s.dir = price > s.last ? 1 : -1;
      s.flashAt = now;
    }
    if (Number.isNaN(s.open)) s.open = price;
    s.last = price; s.bid = t.bid[i]; s.ask = t.ask[i]; s.ts = t.ts[i];
    s.volume += t.size[i];
    s.dirty = true;
    if (s.sym === view.selected) chart.tick(t.ts[i], price, t.size[i]);
    pendingLatency.push(t.ts[i]);
  }
  counters.ticks += t.sym.length;
}

/** One contract message, in the order received; the time it takes counts as busy. */
function onMessage(msg) {
  const started = performance.now();
  handleMessage(msg);
  counters.busyMs += performance.now() - started;
}

/** Duplicates are dropped, gaps counted, a reset snapshot reseeds. */
function handleMessage(msg) {
  view.lastMessageAt = performance.now();
  counters.msgs += 1;
  if (msg.type === "snapshot") {
    if (!msg.reset && view.lastSeq !== null && msg.seq < view.lastSeq) return;
    applySnapshot(msg);
    view.lastSeq = msg.seq;
  } else if (msg.type === "batch") {
    const first = msg.first_seq ?? msg.seq;
    if (view.lastSeq !== null && msg.seq <= view.lastSeq) {
      view.duplicates += 1;
      return;
    }
    if (view.lastSeq !== null && first > view.lastSeq + 1) view.gaps += first - view.lastSeq - 1;
    applyBatch(msg);
    view.lastSeq = msg.seq;
    view.applied += 1;
  }
  if (view.state !== "live") setState("live");
}

// ---------------------------------------------------------------------------------------
// Connection (web/connection.js): transports, backoff, resume and fallback

function startConnection() {
  const query = { symbols: params.get("symbols") || null, max_hz: params.get("max_hz") || null };
  return connect({
    query, token, transport: params.get("transport"), encoding: params.get("encoding"),
    since: () => view.lastSeq,
    onMessage,
    onStatus: ({ state, attempt, transport, encoding }) => {
      view.attempt = attempt;
      view.transport = transport;
      view.encoding = encoding;
      setState(state);
    },
    onBytes: (wire, json) => { counters.wireBytes += wire; counters.jsonBytes += json; },
    onHeartbeat: () => { view.lastMessageAt = performance.now(); },
  });
}

function setState(state) {
  view.state = state;
  const el = document.getElementById("status");
  el.dataset.state = state;
  el.textContent = state === "reconnecting" ? `reconnecting (attempt ${view.attempt})` : state;
  const t = document.getElementById("transport");
  t.textContent = view.transport ? `${view.transport} · ${view.encoding}` : "–";
  t.parentElement.dataset.transport = view.transport || "";
  t.parentElement.dataset.encoding = view.encoding || "";
}

// ---------------------------------------------------------------------------------------
// Watchlist

const tbody = document.querySelector("#watchlist tbody");
const filterBox = document.getElementById("filter");
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "");
const decimals = (x) => (Math.abs(x) < 1 ? 4 : 2);

function buildRow(q) {
  const tr = document.createElement("tr");
  tr.dataset.sym = q.sym;
  for (let i = 0; i < 8; i++) tr.appendChild(document.createElement("td"));
  tr.cells[0].textContent = q.sym;
  tr.addEventListener("click", () => select(q.sym));
  q.row = tr;
  return tr;
}

function layoutRows() {
  const needle = filterBox.value.trim().toUpperCase();
  const syms = [...quotes.keys()].sort();
  const frag = document.createDocumentFragment();
  for (const sym of syms) {
    const q = quotes.get(sym);
    const tr = q.row || buildRow(q);
    tr.hidden = needle !== "" && !sym.toUpperCase().includes(needle);
    tr.setAttribute("aria-selected", String(sym === view.selected));
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
  structureDirty = false;
}

function drawRow(q, now) {
  const c = q.row.cells;
  const d = decimals(q.last);
  const chg = q.last - q.open;
  const pct = (chg / q.open) * 100;
  c[1].textContent = fmt(q.last, d);
  c[2].textContent = fmt(chg, d);
  c[3].textContent = Number.isFinite(pct) ? `${(Math.abs(pct) < 0.005 ? 0 : pct).toFixed(2)}%` : "";
  c[4].textContent = fmt(q.bid, d);
  c[5].textContent = fmt(q.ask, d);
  c[6].textContent = fmt(q.ask - q.bid, d);
  c[7].textContent = q.volume.toLocaleString();
  const sign = chg > 0 ? "pos" : chg < 0 ? "neg" : "";
  c[2].className = c[3].className = sign;
  c[1].className = now - q.flashAt < FLASH_MS ? (q.dir > 0 ? "flash-up" : "flash-down") : "";
  q.dirty = now - q.flashAt < FLASH_MS; // redraw once more to clear the flash
}

function select(sym) {
  if (!quotes.has(sym)) return;
  view.selected = sym;
  structureDirty = true;
  chart.reseed();
}

filterBox.addEventListener("input", () => { structureDirty = true; });

// ---------------------------------------------------------------------------------------
// Chart: 1 s or 1 min candlesticks with a volume pane, seeded from /api/bars, then live.

const chart = (() => {
  const el = document.getElementById("chart");
  const c = createChart(el, {
    autoSize: true,
    layout: { background: { color: "#131722" }, textColor: "#d1d4dc", attributionLogo: true },
    grid: { vertLines: { color: "#1e222d" }, horzLines: { color: "#1e222d" } },
    timeScale: { timeVisible: true, secondsVisible: true, barSpacing: 9, rightOffset: 4 },
  });
  const candles = c.addSeries(CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a",
    wickDownColor: "#ef5350", borderVisible: false,
  });
  const volume = c.addSeries(HistogramSeries, { priceFormat: { type: "volume" }, color: "#2962ff88" }, 1);
  c.panes()[1]?.setHeight(90);
  let bar = null; // the newest bar, updated by ticks
  let seeding = 0; // ticks that arrive while bars load are replayed on top
  let early = [];
  let dirty = false;

  function seconds() { return view.interval === "1m" ? 60 : 1; }

  async function reseed() {
    const sym = view.selected;
    if (!sym) return;
    document.getElementById("chart-symbol").textContent = sym;
    const seed = ++seeding;
    early = [];
    const url = serverUrl("api/bars", { symbol: sym, interval: view.interval, limit: "600" },
                          { token });
    let data;
    try {
      data = await (await fetch(url, { cache: "no-store" })).json();
    } catch { return; }
    if (seed !== seeding || !data.t) return;
    const bars = data.t.map((t, i) => ({ time: t, open: data.o[i], high: data.h[i],
                                         low: data.l[i], close: data.c[i], volume: data.v[i] }));
    candles.setData(bars.map(({ volume: _, ...b }) => b));
    volume.setData(bars.map((b) => ({ time: b.time, value: b.volume })));
    bar = bars.length ? { ...bars[bars.length - 1] } : null;
    seeding = 0;
    for (const [ts, price, size] of early) tick(ts, price, size);
    early = [];
  }

  function tick(ts, price, size) {
    if (seeding) { early.push([ts, price, size]); return; }
    const step = seconds();
    const time = Math.floor(ts / 1000 / step) * step;
    if (bar && time < bar.time) return; // already in the seeded bars
    if (!bar || time > bar.time) {
      bar = { time, open: price, high: price, low: price, close: price, volume: 0 };
    }
    bar.high = Math.max(bar.high, price);
    bar.low = Math.min(bar.low, price);
    bar.close = price;
    bar.volume += size;
    dirty = true;
  }

  function draw() {
    if (!dirty || !bar) return;
    dirty = false;
    const { volume: v, ...ohlc } = bar;
    candles.update(ohlc);
    volume.update({ time: bar.time, value: v });
  }

  for (const button of document.querySelectorAll("#intervals button")) {
    button.addEventListener("click", () => {
      view.interval = button.dataset.interval;
      for (const b of document.querySelectorAll("#intervals button")) {
        b.setAttribute("aria-pressed", String(b === button));
      }
      reseed();
    });
  }
  return { reseed, tick, draw, lastBar: () => (bar ? { ...bar } : null) };
})();

// ---------------------------------------------------------------------------------------
// Drawing, once per animation frame, and the status bar, once a second.

function frame() {
  const started = performance.now();
  const now = Date.now();
  if (structureDirty) layoutRows();
  for (const q of quotes.values()) if (q.dirty && q.row) drawRow(q, now);
  chart.draw();
  for (const ts of pendingLatency) {
    latencies[latencyCount++ % LATENCY_SAMPLES] = now - ts;
  }
  pendingLatency.length = 0;
  if (view.state === "live" && performance.now() - view.lastMessageAt > STALE_MS) {
    setState("stale");
  }
  counters.busyMs += performance.now() - started;
  requestAnimationFrame(frame);
}

function human(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} kB`;
  return `${Math.round(bytes)} B`;
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
}

let lastTick = performance.now();
function everySecond() {
  const now = performance.now();
  const dt = (now - lastTick) / 1000;
  lastTick = now;
  const n = Math.min(latencyCount, LATENCY_SAMPLES);
  const sorted = latencies.slice(0, n).sort();
  const p50 = percentile(sorted, 0.5);
  const p99 = percentile(sorted, 0.99);
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("msgs-rate", Math.round(counters.msgs / dt));
  set("ticks-rate", Math.round(counters.ticks / dt));
  set("bytes-rate", human(counters.wireBytes / dt));
  set("ratio", counters.wireBytes && counters.jsonBytes !== counters.wireBytes
    ? `${(counters.jsonBytes / counters.wireBytes).toFixed(1)}× smaller` : "uncompressed");
  set("latency", Number.isFinite(p50) ? `p50 ${p50.toFixed(0)} ms · p99 ${p99.toFixed(0)} ms` : "–");
  set("seq", view.lastSeq ?? "–");
  set("gaps", view.gaps);
  window.__dashboard.busy = counters.busyMs / (dt * 1000);
  window.__dashboard.latency = { p50, p99 };
  for (const k of Object.keys(counters)) counters[k] = 0;
  latencyCount = 0;
}

// The feed's own health (a stale or reconnecting exchange feed) and the broker's, from
// /healthz (a degraded edge answers 503 with the same body).
async function checkFeed() {
  const el = document.getElementById("feed");
  try {
    const health = await (await fetch("healthz", { cache: "no-store" })).json();
    const down = (health.feeds || []).filter((f) => f.state !== "live")
      .map((f) => [`feed ${f.name} ${f.state}`, f.state]);
    // An edge server cut off from its broker keeps the page connected, but nothing new comes.
    if (health.broker && health.broker.state === "degraded") down.unshift(["broker degraded: no new data", "degraded"]);
    el.textContent = down.map(([text]) => text).join(" · ");
    el.dataset.state = down.length ? down[0][1] : "live";
    el.hidden = down.length === 0;
  } catch {
    // the connection state already says the server is unreachable
  }
}

// For tests and for people poking at the page from the console.
window.__dashboard = { view, quotes, chart, busy: 0, latency: null };

startConnection();
requestAnimationFrame(frame);
setInterval(everySecond, 1000);
checkFeed();
setInterval(checkFeed, 5000);
