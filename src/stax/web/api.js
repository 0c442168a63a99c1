// The RPC client: one WebSocket to stax-server, the same JSON messages as the Unix socket.
// Requests get their answers by id; pushed events go to rpc.onEvent, connection changes to
// rpc.onState; a lost connection is retried every second.

// A server bound to a non-loopback address wants its token (the URL `stax status` prints carries
// it as ?token=): kept in session storage for this tab, taken out of the address bar, and sent
// as the WebSocket's ?token= query parameter.
const TOKEN = (() => {
  const q = new URLSearchParams(location.search);
  if (q.has("token")) {
    sessionStorage.setItem("stax-token", q.get("token"));
    q.delete("token");
    const rest = q.toString();
    history.replaceState(history.state, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  return sessionStorage.getItem("stax-token");
})();

export class RpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

// Kernel addresses exceed 2^53: keep `addr` fields exact (as BigInt) where the number is not.
function exactAddr(key, value, ctx) {
  if (key === "addr" && typeof value === "number" && !Number.isSafeInteger(value) && ctx?.source) {
    return BigInt(ctx.source);
  }
  return value;
}

class Rpc {
  constructor() {
    this.onEvent = () => {}; this.onState = () => {};
    this.next = 1; this.waiting = new Map(); this.ws = null; this.open = false;
  }
  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const auth = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "";
    const ws = new WebSocket(`${proto}//${location.host}/ws${auth}`);
    this.ws = ws;
    ws.onopen = () => { this.open = true; this.onState(true); };
    ws.onclose = () => {
      this.open = false;
      for (const [, w] of this.waiting) w.reject(new RpcError("disconnected", "connection closed"));
      this.waiting.clear();
      this.onState(false);
      setTimeout(() => this.connect(), 1000);
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data, ev.data.includes('"addr"') ? exactAddr : undefined); } catch { return; }
      if (msg.event) { this.onEvent(msg); return; }
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error) w.reject(new RpcError(msg.error.code, msg.error.message));
      else w.resolve(msg.result);
    };
  }
  call(method, params = {}) {
    if (!this.open) return Promise.reject(new RpcError("disconnected", "not connected"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
}

// The page's one connection; app.js sets its handlers and connects it.
export const rpc = new Rpc();
