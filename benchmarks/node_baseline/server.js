// The Node baseline of benchmarks/fanout.py: the same feed as the Python server (the ticks
// of its seeded simulator, written by fanout.py to --ticks FILE and released on their own
// schedule, every 5 ms and right before each batch closes), coalesced every 50 ms into one
// columnar message per batch, JSON-encoded once (and brotli-compressed once, at
// --brotli-quality, for clients that ask for encoding=br), and the same bytes sent to every
// client with the ws library. Quality 5 is what a real-time server configures (Node's
// default, 11, costs milliseconds a batch); 11 is measured too, as users leave it.
//
//   node server.js --port 0 --ticks ticks.json --batch-ms 50 --brotli-quality 5
"use strict";
const fs = require("fs");
const http = require("http");
const zlib = require("zlib");
const { WebSocketServer } = require("ws");

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, a) =>
  (v.startsWith("--") ? [...acc, [v.slice(2), a[i + 1]]] : acc), []));
const batchMs = Number(args["batch-ms"] || 50);
const brotliOptions = { params: {
  [zlib.constants.BROTLI_PARAM_QUALITY]: Number(args["brotli-quality"] || 5) } };
// {symbols, offset_ms, sym, price, size, bid, ask}: columns in schedule order
const feed = JSON.parse(fs.readFileSync(args.ticks));
const names = feed.symbols;

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
let cursor = 0;
const p0 = performance.now();
const epoch0 = performance.timeOrigin + p0; // epoch ms with sub-millisecond digits
function release() { // every row whose scheduled time has come, stamped like the simulator
  const elapsed = performance.now() - p0;
  while (cursor < feed.offset_ms.length && feed.offset_ms[cursor] <= elapsed) {
    const k = cursor++;
    pending.push([feed.sym[k], feed.price[k], feed.size[k], feed.bid[k], feed.ask[k],
                  Math.round((epoch0 + feed.offset_ms[k]) * 10) / 10]);
  }
}
setInterval(release, 5);
setInterval(() => { // the batcher: one message per 50 ms, encoded once
  release();
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
      br = br || zlib.brotliCompressSync(json, brotliOptions);
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
