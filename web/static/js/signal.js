// WebSocket client for /ws: JSON messages, automatic reconnect with backoff, resume via `join`.
import { ClientCloseCode, FATAL_CLOSE_CODES } from './protocol.js';

/** A tiny typed event emitter: `on(type, fn)` returns a function that unsubscribes. */
export class Emitter {
  #handlers = new Map();

  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  emit(type, payload) {
    for (const fn of [...(this.#handlers.get(type) ?? [])]) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`handler for ${type} failed`, err);
      }
    }
  }
}

/** Socket states emitted as `state`: connecting, open, reconnecting, closed. */
export const SocketState = Object.freeze({
  CONNECTING: 'connecting',
  OPEN: 'open',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed',
});

const PING_INTERVAL_MS = 15000;

/** The `/ws` URL of this page's origin. */
export function wsUrl(path = '/ws') {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}${path}`;
}

/**
 * A signaling connection. Every server message is emitted under its `type` (and as `message`).
 * `joinMessage()` builds the `join` sent on every (re)connect, so it can carry `resume_from`.
 */
export class SignalClient extends Emitter {
  #url;
  #joinMessage;
  #ws = null;
  #attempt = 0;
  #stopped = false;
  #reconnectTimer = null;
  #pingTimer = null;
  state = SocketState.CLOSED;

  constructor({ url = wsUrl(), joinMessage }) {
    super();
    this.#url = url;
    this.#joinMessage = joinMessage;
  }

  /** Open the socket (and keep it open until `close()`). */
  connect() {
    this.#stopped = false;
    this.#open();
  }

  /** Send a message; returns false when the socket is not open (the caller may retry later). */
  send(message) {
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(message));
    return true;
  }

  /** Whether messages can be sent now. */
  get isOpen() {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  /** Close for good: no reconnect. */
  close() {
    this.#stopped = true;
    clearTimeout(this.#reconnectTimer);
    this.#stopPing();
    this.#ws?.close(ClientCloseCode.NORMAL, 'bye');
    this.#ws = null;
    this.#setState(SocketState.CLOSED);
  }

  /** Drop the current socket and reconnect now (used after a network change). */
  reconnectNow() {
    if (this.#stopped) return;
    this.#ws?.close(ClientCloseCode.RECONNECT, 'reconnect');
  }

  #open() {
    this.#setState(this.#attempt === 0 ? SocketState.CONNECTING : SocketState.RECONNECTING);
    const ws = new WebSocket(this.#url);
    this.#ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== this.#ws) return;
      ws.send(JSON.stringify(this.#joinMessage()));
      this.#startPing();
    });
    ws.addEventListener('message', (event) => {
      if (ws !== this.#ws) return;
      this.#dispatch(event.data);
    });
    ws.addEventListener('close', (event) => {
      if (ws !== this.#ws) return;
      this.#onClose(event);
    });
  }

  #dispatch(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      console.warn('ignoring a non-JSON frame');
      return;
    }
    if (!message || typeof message.type !== 'string') return;
    if (message.type === 'joined') {
      this.#attempt = 0;
      this.#setState(SocketState.OPEN);
    }
    this.emit(message.type, message);
    this.emit('message', message);
  }

  #onClose(event) {
    this.#stopPing();
    this.#ws = null;
    if (this.#stopped) return;
    if (FATAL_CLOSE_CODES.has(event.code)) {
      this.#stopped = true;
      this.#setState(SocketState.CLOSED);
      this.emit('fatal', { code: event.code, reason: event.reason });
      return;
    }
    this.#attempt += 1;
    this.#setState(SocketState.RECONNECTING);
    const base = Math.min(8000, 300 * 2 ** Math.min(this.#attempt - 1, 5));
    const delay = base / 2 + Math.random() * (base / 2);
    this.#reconnectTimer = setTimeout(() => this.#open(), delay);
  }

  #startPing() {
    this.#stopPing();
    this.#pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_INTERVAL_MS);
  }

  #stopPing() {
    clearInterval(this.#pingTimer);
    this.#pingTimer = null;
  }

  #setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }
}
