// First page: live quotes in a table over one WebSocket (JSON encoding). State per symbol in
// a Map, drawn once per animation frame; feed strings are rendered as text, never as HTML.

const rows = new Map(); // sym -> {tr, cells, last, open, volume, ts, dir}
const tbody = document.querySelector("#quotes tbody");
const status = document.getElementById("status");
let lastSeq = null;
let gaps = 0;
let dirty = false;
let attempt = 0;

function row(sym) {
  let r = rows.get(sym);
  if (!r) {
    const tr = document.createElement("tr");
    const cells = [];
    for (let i = 0; i < 7; i++) cells.push(tr.appendChild(document.createElement("td")));
    cells[0].textContent = sym;
    r = { tr, cells, last: NaN, open: NaN, bid: NaN, ask: NaN, volume: 0, ts: 0, dir: 0 };
    rows.set(sym, r);
    const after = [...rows.keys()].sort().indexOf(sym);
    tbody.insertBefore(tr, tbody.children[after] || null);
  }
  return r;
}

function applySnapshot(q) {
  for (let i = 0; i < q.sym.length; i++) {
    const r = row(q.sym[i]);
    Object.assign(r, { last: q.price[i], bid: q.bid[i], ask: q.ask[i], ts: q.ts[i],
                       open: q.open[i], volume: q.volume[i], dir: 0 });
  }
}

function applyBatch(t) {
  for (let i = 0; i < t.sym.length; i++) {
    const r = row(t.sym[i]);
    r.dir = Math.sign(t.price[i] - r.last) || r.dir;
    if (Number.isNaN(r.open)) r.open = t.price[i];
    r.last = t.price[i]; r.bid = t.bid[i]; r.ask = t.ask[i]; r.ts = t.ts[i];
    r.volume += t.size[i];
  }
}

function onMessage(msg) {
  if (msg.type === "snapshot") {
    applySnapshot(msg.quotes);
    lastSeq = msg.seq;
  } else if (msg.type === "batch") {
    const first = msg.first_seq ?? msg.seq;
    if (lastSeq !== null && first <= lastSeq) return; // already shown
    if (lastSeq !== null && first > lastSeq + 1) gaps += first - lastSeq - 1;
    applyBatch(msg.ticks);
    lastSeq = msg.seq;
  } else {
    return;
  }
  dirty = true;
}

function draw() {
  if (dirty) {
    dirty = false;
    for (const r of rows.values()) {
      const c = r.cells;
      const chg = ((r.last - r.open) / r.open) * 100;
      c[1].textContent = r.last.toFixed(2);
      c[1].className = r.dir > 0 ? "up" : r.dir < 0 ? "down" : "";
      c[2].textContent = Number.isFinite(chg) ? chg.toFixed(2) : "";
      c[2].className = chg > 0 ? "up" : chg < 0 ? "down" : "";
      c[3].textContent = r.bid.toFixed(2);
      c[4].textContent = r.ask.toFixed(2);
      c[5].textContent = String(r.volume);
      c[6].textContent = new Date(r.ts).toLocaleTimeString();
    }
    status.textContent = `live · seq ${lastSeq} · gaps ${gaps}`;
  }
  requestAnimationFrame(draw);
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (lastSeq !== null) url.searchParams.set("since", String(lastSeq));
  const ws = new WebSocket(url);
  ws.onopen = () => { attempt = 0; status.dataset.state = "live"; };
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = () => {
    attempt += 1;
    status.dataset.state = "reconnecting";
    status.textContent = `reconnecting (attempt ${attempt})…`;
    const delay = Math.min(10000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}

connect();
requestAnimationFrame(draw);
