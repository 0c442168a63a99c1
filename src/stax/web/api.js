// The RPC client: one WebSocket to stax-server, the same JSON messages as the Unix socket.
// Requests get their answers by id; pushed events go to rpc.onEvent, connection changes to
// rpc.onState; a call unanswered within CALL_TIMEOUT_MS fails with code "timeout"; a lost
// connection is retried with exponential back-off (RETRY_MIN_MS doubling up to RETRY_MAX_MS).

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

export const CALL_TIMEOUT_MS = 15000, RETRY_MIN_MS = 500, RETRY_MAX_MS = 15000;

// an "addr" of 16 or more digits (kernel addresses); user-space ones have at most 15
const BIG_ADDR = /"addr":\s*\d{16}/;

class Rpc {
  constructor() {
    this.onEvent = () => {}; this.onState = () => {};
    this.next = 1; this.waiting = new Map(); this.ws = null; this.open = false;
    this.retryMs = RETRY_MIN_MS; this.retries = 0; this.nextRetryAt = null;
  }
  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const auth = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "";
    const ws = new WebSocket(`${proto}//${location.host}/ws${auth}`);
    this.ws = ws;
    ws.onopen = () => { this.open = true; this.retryMs = RETRY_MIN_MS; this.retries = 0; this.onState(true); };
    ws.onclose = () => {
      this.open = false;
      for (const [, w] of this.waiting) { clearTimeout(w.timer); w.reject(new RpcError("disconnected", "connection closed")); }
      this.waiting.clear();
      const delay = this.retryMs;
      this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
      this.retries++;
      this.nextRetryAt = Date.now() + delay;
      this.onState(false, delay);
      setTimeout(() => this.connect(), delay);
    };
    ws.onmessage = (ev) => {
      let msg;
      // the reviver costs a call per value: only for an answer holding an address past 2^53
      try { msg = JSON.parse(ev.data, BIG_ADDR.test(ev.data) ? exactAddr : undefined); } catch { return; }
      if (msg.event) { this.onEvent(msg); return; }
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      clearTimeout(w.timer);
      if (msg.error) w.reject(new RpcError(msg.error.code, msg.error.message));
      else w.resolve(msg.result);
    };
  }
  call(method, params = {}) {
    if (!this.open) return Promise.reject(new RpcError("disconnected", "not connected"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.waiting.delete(id)) return;
        reject(new RpcError("timeout", `${method}: no answer from stax-server in ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
}

// The page's one connection; app.js sets its handlers and connects it.
export const rpc = new Rpc();
