// The Node baseline of benchmarks/fanout.py: the same feed shape (symbols x ticks/s, prices
// on a 0.01 grid, whole-share sizes), coalesced every 50 ms into one columnar message per
// batch, JSON-encoded once (and brotli-compressed once, with Node's defaults, for clients
// that ask for encoding=br), and the same bytes sent to every client with the ws library.
//
//   node server.js --port 0 --symbols 100 --tick-rate 2000 --batch-ms 50
"use strict";
const http = require("http");
const zlib = require("zlib");
const { WebSocketServer } = require("ws");

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, a) =>
  (v.startsWith("--") ? [...acc, [v.slice(2), a[i + 1]]] : acc), []));
const symbols = Number(args.symbols || 100);
const tickRate = Number(args["tick-rate"] || 2000);
const batchMs = Number(args["batch-ms"] || 50);
const names = Array.from({ length: symbols }, (_, i) => `SYM${String(i).padStart(4, "0")}`);
const price = names.map((_, i) => 20 + 5 * i);

const server = http.createServer((req, res) => {
  if (req.url.startsWith("/api/symbols")) {
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ symbols: names }));
  } else { res.statusCode = 404; res.end(); }
});
const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate: false });
const wantsBr = new WeakSet();
wss.on("connection", (ws, req) => {
  if (new URL(req.url, "http://x").searchParams.get("encoding") === "br") wantsBr.add(ws);
});

let seq = 0;
let pending = [];
let last = performance.now();
const t0 = Date.now() - performance.now();
function gauss() { return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()); }
setInterval(() => { // the feed: Poisson-ish arrivals at tickRate, random walk on the grid
  const now = performance.now();
  const n = Math.round((now - last) / 1000 * tickRate);
  for (let k = 0; k < n; k++) {
    const s = Math.floor(Math.random() * symbols);
    price[s] = Math.max(0.01, Math.round((price[s] + 0.01 * Math.round(gauss())) * 100) / 100);
    const spread = 0.01 * (1 + Math.floor(Math.random() * 3));
    const bid = Math.round((price[s] - 0.01) * 100) / 100;
    pending.push([s, price[s], Math.max(1, Math.round(Math.exp(4.6 + gauss()))), bid,
                  Math.round((bid + spread) * 100) / 100,
                  Math.round((t0 + last + (now - last) * (k + 1) / n) * 10) / 10]);
  }
  last = now;
}, 5);
setInterval(() => { // the batcher: one message per 50 ms, encoded once
  if (!pending.length) return;
  const rows = pending; pending = [];
  seq += 1;
  const ticks = { sym: [], price: [], size: [], bid: [], ask: [], ts: [] };
  for (const r of rows) {
    ticks.sym.push(names[r[0]]); ticks.price.push(r[1]); ticks.size.push(r[2]);
    ticks.bid.push(r[3]); ticks.ask.push(r[4]); ticks.ts.push(r[5]);
  }
  const json = JSON.stringify({ type: "batch", seq, ts: Math.round(Date.now() * 10) / 10, ticks });
  let br = null;
  for (const ws of wss.clients) {
    if (ws.readyState !== 1) continue;
    if (wantsBr.has(ws)) {
      br = br || zlib.brotliCompressSync(json);
      ws.send(br, { binary: true });
    } else {
      ws.send(json);
    }
  }
}, batchMs);

server.listen(Number(args.port || 0), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
