/**
 * feedclient.js — a dependency-free client for the feed server's WebSocket protocol (`/v1/ws`).
 *
 * Works in browsers (ES module) and in any runtime with a WHATWG `WebSocket` (Node ≥ 22, Deno,
 * Bun); pass `{ WebSocket: Impl }` elsewhere.
 *
 *     import { FeedClient } from "./feedclient.js";
 *
 *     const client = new FeedClient("wss://feeds.example.com/v1/ws", { token });
 *     client.on("status", ({ state, delay }) => console.log(state, delay));
 *
 *     const sub = client.subscribe("booking:f4d1c8e5", {
 *       onSubscribed(reply) { loadHistory(); },          // fresh cursor: read history now
 *       onEvent({ event, activity, seq }) { render(event, activity); },   // created|updated|deleted
 *       onReset({ reason }) { reloadHistory(); },        // events were lost: reload history
 *       onError(err) { console.warn(err.code, err.detail); },
 *     });
 *     client.connect();
 *
 *     const [stored] = await client.publish("booking:f4d1c8e5", { verb: "comment.add", object: "f4d1c8e5", text: "Hi" });
 *     await client.patch("booking:f4d1c8e5", stored.id, { set: { text: "Hello" } });
 *     await client.remove("booking:f4d1c8e5", stored.id);
 *     sub.unsubscribe();
 *     client.close();
 *
 * What it does for you
 *
 * - **Authentication** by first message (`{"type":"auth","token":…}`; browsers cannot set headers
 *   on a WebSocket). Without a token the connection stays anonymous (public feeds only).
 * - **Subscriptions with resume.** Each subscription keeps its cursor `(epoch, seq)`; after a
 *   reconnect it subscribes with `since` and the server replays what was missed. Events are
 *   delivered in `seq` order and at most once (a replayed event already seen is dropped). When the
 *   server cannot replay (`recovered:false`) or reports a `reset`, `onReset` is called: the caller
 *   must reload history — nothing is silently skipped.
 * - **Reconnects** with exponential backoff and jitter (`minDelay`…`maxDelay`, "equal jitter":
 *   half fixed, half random), forever, except after close codes 4001 (unauthenticated / token
 *   expired) and 4003 (forbidden), where retrying cannot help: the state becomes `"closed"`.
 * - **Requests with acks.** `publish()`, `update()`, `patch()`, `remove()` and `request()` return
 *   a promise per `ref` that resolves with the server's reply, rejects with a `FeedError` on an
 *   `error` reply, on timeout, or when the connection drops after the message was sent (the write
 *   may or may not have happened: give the activity an `id` or a `foreign_id`+`time` to make a
 *   retry idempotent). Messages sent while disconnected wait for the next connection (until their
 *   timeout).
 * - **Liveness.** An application-level `ping` every `pingInterval` ms; no `pong` within
 *   `ackTimeout` closes the socket and reconnects (a browser cannot see protocol pings).
 *
 * Events (`client.on(type, fn)` returns a function that removes the listener)
 *
 * | type      | payload |
 * |-----------|---------|
 * | `status`  | `{state, attempt, delay, code, reason}`; state ∈ idle, connecting, open, reconnecting, closed |
 * | `welcome` | the server's `{"type":"welcome","sub":…}` (after a successful auth) |
 * | `frame`   | every frame received, decoded (e.g. notification count pushes) |
 * | `error`   | a `FeedError` not tied to a pending request |
 */

/** An error reply from the server, a timeout, or a lost connection. */
export class FeedError extends Error {
  /**
   * @param {string} code   server code (`forbidden`, `invalid`, …) or `timeout`, `disconnected`, `closed`
   * @param {string} detail human-readable explanation
   * @param {object} [frame] the server's error frame, when there is one
   */
  constructor(code, detail, frame) {
    super(`${code}: ${detail}`);
    this.name = "FeedError";
    this.code = code;
    this.detail = detail;
    this.frame = frame;
  }
}

const TERMINAL_CLOSE_CODES = new Set([4001, 4003]);

/** One subscription to one feed; created by `FeedClient.subscribe`. */
export class Subscription {
  constructor(client, feed, handlers, since) {
    this.client = client;
    this.feed = feed;
    this.handlers = handlers;
    /** The resume cursor: the last change seen. `seq` is null when unknown. */
    this.cursor = since ? { epoch: since.epoch, seq: since.seq } : { epoch: null, seq: null };
    this.active = true;
    this._everSubscribed = false;
    this._attempts = 0;
    this._catchUp = null; // the `subscribed` seq, adopted once the replay is known to be complete
  }

  /** The `subscribe` message: with `since` when the cursor is known. */
  _message() {
    const message = { type: "subscribe", feed: this.feed };
    if (this.cursor.epoch && this.cursor.seq !== null) {
      message.since = { epoch: this.cursor.epoch, seq: this.cursor.seq };
    }
    return message;
  }

  /** Handle the `subscribed` reply (called in frame order, before any replayed event). */
  _onSubscribed(reply, resumed) {
    const firstTime = !this._everSubscribed;
    this._everSubscribed = true;
    if (resumed && reply.recovered) {
      // The replay follows; the cursor advances with it and jumps to reply.seq at the barrier.
      this._catchUp = reply.seq;
      this._call("onSubscribed", reply, { resumed: true });
      return;
    }
    this.cursor = { epoch: reply.epoch, seq: reply.seq };
    this._catchUp = null;
    if (resumed || !firstTime) {
      // We had a position but the server could not replay from it (or we had lost it).
      this._call("onReset", { feed: this.feed, epoch: reply.epoch, seq: reply.seq, reason: "not-recovered" });
    } else {
      this._call("onSubscribed", reply, { resumed: false });
    }
  }

  /** A `ping` sent after `subscribe` came back: every replayed event has been received. */
  _onBarrier() {
    if (this._catchUp !== null) {
      this.cursor.seq = Math.max(this.cursor.seq ?? 0, this._catchUp);
      this._catchUp = null;
    }
  }

  _onActivity(frame) {
    const { seq } = this.cursor;
    if (seq !== null && frame.seq <= seq) return; // already seen (replay overlap)
    this.cursor.seq = frame.seq;
    this._call("onEvent", frame);
  }

  _onReset(frame) {
    // Live events continue after the (epoch, seq) the reset names (null if the server names none:
    // then accept whatever comes next).
    const seq = Number.isInteger(frame.seq) ? frame.seq : null;
    this.cursor = { epoch: frame.epoch, seq };
    this._catchUp = null;
    this._call("onReset", { feed: this.feed, epoch: frame.epoch, seq, reason: "reset" });
  }

  _call(name, ...args) {
    const fn = this.handlers[name];
    if (!fn) return;
    try {
      fn(...args);
    } catch (err) {
      // A failing handler must not break the connection's frame loop.
      setTimeout(() => {
        throw err;
      });
    }
  }

  /** Stop receiving this feed's events (also on future reconnects). */
  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client._dropSubscription(this);
  }
}

export class FeedClient {
  /**
   * @param {string} url WebSocket URL, e.g. `ws://127.0.0.1:8000/v1/ws`
   * @param {object} [options]
   * @param {string} [options.token] JWT sent as the first message; omit for anonymous access
   * @param {number} [options.ackTimeout=10000] ms to wait for a reply (and for a `pong`)
   * @param {number} [options.minDelay=500] first reconnect delay, ms
   * @param {number} [options.maxDelay=15000] reconnect delay cap, ms
   * @param {number} [options.pingInterval=25000] ms between liveness pings; 0 disables
   * @param {typeof WebSocket} [options.WebSocket] WebSocket implementation (default: global)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.token = options.token || null;
    this.ackTimeout = options.ackTimeout ?? 10000;
    this.minDelay = options.minDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 15000;
    this.pingInterval = options.pingInterval ?? 25000;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    /** idle | connecting | open | reconnecting | closed */
    this.state = "idle";
    /** The authenticated identity (`sub` from `welcome`), or null when anonymous. */
    this.sub = null;
    this.subscriptions = new Map(); // feed → Subscription
    this._ws = null;
    this._ready = false; // open and authenticated: requests may be sent
    this._attempt = 0;
    this._nextRef = 1;
    this._pending = new Map(); // ref → {resolve, reject, timer, sent, message}
    this._outbox = []; // refs of requests waiting for a connection
    this._listeners = new Map();
    this._retryTimer = null;
    this._pingTimer = null;
    this._stopped = false;
  }

  /** Listen to `status`, `welcome`, `frame` or `error`; returns a function that stops listening. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type)?.delete(fn);
  }

  _emit(type, payload) {
    for (const fn of this._listeners.get(type) || []) {
      try {
        fn(payload);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("status", { state, attempt: this._attempt, ...extra });
  }

  /** Open the connection (and keep it open until `close()`). */
  connect() {
    this._stopped = false;
    if (this._ws || this._retryTimer) return this;
    this._open();
    return this;
  }

  /** Close for good: no reconnect; pending requests reject with code `closed`. */
  close() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._stopPing();
    const ws = this._ws;
    this._ws = null;
    this._ready = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closed */
      }
    }
    this._failAll(new FeedError("closed", "the client was closed"), true);
    this._setState("closed", { code: 1000, reason: "client closed" });
  }

  /**
   * Subscribe to `feed`. Handlers (all optional): `onSubscribed(reply, {resumed})`,
   * `onEvent(frame)`, `onReset({feed, epoch, seq, reason})`, `onError(FeedError)`.
   * `since: {epoch, seq}` resumes from a cursor saved earlier (e.g. in localStorage).
   */
  subscribe(feed, handlers = {}, { since } = {}) {
    this.subscriptions.get(feed)?.unsubscribe();
    const sub = new Subscription(this, feed, handlers, since);
    this.subscriptions.set(feed, sub);
    if (this._ready) this._sendSubscribe(sub);
    return sub;
  }

  /**
   * Publish one activity (an object) or several (an array) to `feed`; resolves with the stored
   * activities from the server's `ack`, rejects with a `FeedError`.
   */
  async publish(feed, activity, { timeout } = {}) {
    const message = { type: "publish", feed };
    if (Array.isArray(activity)) message.activities = activity;
    else message.activity = activity;
    const reply = await this.request(message, { timeout });
    return reply.activities;
  }

  /** Replace activity `id` (like `PUT`); `version` makes it conditional. Resolves with the stored activity. */
  async update(feed, id, activity, { version, timeout } = {}) {
    const message = { type: "update", feed, id, activity };
    if (version !== undefined) message.version = version;
    return (await this.request(message, { timeout })).activities[0];
  }

  /** Change fields of activity `id` (like `PATCH`): `{set, unset, version}`. Resolves with the stored activity. */
  async patch(feed, id, { set, unset, version } = {}, { timeout } = {}) {
    const message = { type: "patch", feed, id };
    if (set) message.set = set;
    if (unset) message.unset = unset;
    if (version !== undefined) message.version = version;
    return (await this.request(message, { timeout })).activities[0];
  }

  /** Delete activity `id`, or every activity with `{foreignId}`; resolves with the number removed. */
  async remove(feed, id, { foreignId, timeout } = {}) {
    const message = { type: "delete", feed };
    if (foreignId !== undefined) message.foreign_id = foreignId;
    else message.id = id;
    return (await this.request(message, { timeout })).removed;
  }

  /**
   * Send any protocol message with a fresh `ref`; resolves with the reply that echoes it.
   * Waits for a connection if there is none (within `timeout`).
   */
  request(message, { timeout } = {}) {
    const ref = `r${this._nextRef++}`;
    const framed = { ...message, ref };
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, sent: false, message: framed };
      entry.timer = setTimeout(() => {
        this._pending.delete(ref);
        this._outbox = this._outbox.filter((r) => r !== ref);
        reject(new FeedError("timeout", `no reply to ${message.type} within ${timeout ?? this.ackTimeout} ms`));
      }, timeout ?? this.ackTimeout);
      this._pending.set(ref, entry);
      if (this._ready) this._transmit(ref);
      else this._outbox.push(ref);
    });
  }

  // -- connection lifecycle ---------------------------------------------------------------------

  _open() {
    this._setState(this._attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (err) {
      this._scheduleReconnect(1006, String(err));
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onFrame(ev.data);
    ws.onerror = () => {}; // the close event that follows carries what we need
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    if (!this.token) {
      this._onReady(null);
      return;
    }
    // First-message auth. Sent directly: ordinary requests wait until `welcome`.
    const ref = `auth${this._nextRef++}`;
    const entry = {
      sent: true,
      resolve: (welcome) => this._onReady(welcome),
      reject: () => {}, // an invalid token also closes the socket with 4001: handled in _onClose
      message: { type: "auth", token: this.token, ref },
    };
    entry.timer = setTimeout(() => {
      this._pending.delete(ref);
      ws.close(4000, "no welcome");
    }, this.ackTimeout);
    this._pending.set(ref, entry);
    ws.send(JSON.stringify(entry.message));
  }

  _onReady(welcome) {
    this._ready = true;
    const resumed = this._attempt > 0;
    this._attempt = 0;
    this.sub = welcome ? welcome.sub : null;
    // Resubscribe and flush first, so listeners below that subscribe are sent exactly once.
    for (const sub of this.subscriptions.values()) this._sendSubscribe(sub);
    const queued = this._outbox;
    this._outbox = [];
    for (const ref of queued) this._transmit(ref);
    this._startPing();
    if (welcome) this._emit("welcome", welcome);
    this._setState("open", { resumed });
  }

  _sendSubscribe(sub) {
    const message = sub._message();
    const resumed = "since" in message;
    const attempt = ++sub._attempts; // only the reply to the latest subscribe counts
    this.request(message)
      .then((reply) => {
        if (sub.active && this.subscriptions.get(sub.feed) === sub && attempt === sub._attempts) {
          sub._onSubscribed(reply, resumed);
        }
      })
      .catch((err) => {
        if (err.code === "disconnected" || err.code === "closed") return; // retried on reconnect
        if (err.frame) this._dropSubscription(sub); // refused by the server: do not retry
        sub._call("onError", err);
      });
    // Frames on one connection are handled in order, so the pong comes after the whole replay.
    this.request({ type: "ping" })
      .then(() => sub._onBarrier())
      .catch(() => {});
  }

  _dropSubscription(sub) {
    sub.active = false;
    if (this.subscriptions.get(sub.feed) !== sub) return;
    this.subscriptions.delete(sub.feed);
    if (this._ready) this.request({ type: "unsubscribe", feed: sub.feed }).catch(() => {});
  }

  _transmit(ref) {
    const entry = this._pending.get(ref);
    if (!entry) return;
    entry.sent = true;
    this._ws.send(JSON.stringify(entry.message));
  }

  _onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    const sub = frame.feed !== undefined ? this.subscriptions.get(frame.feed) : undefined;
    if (frame.type === "activity") {
      sub?._onActivity(frame);
    } else if (frame.type === "reset") {
      sub?._onReset(frame);
    }
    if (frame.ref !== undefined && this._pending.has(frame.ref)) {
      const entry = this._pending.get(frame.ref);
      this._pending.delete(frame.ref);
      clearTimeout(entry.timer);
      if (frame.type === "error") entry.reject(new FeedError(frame.code, frame.detail, frame));
      else entry.resolve(frame);
    } else if (frame.type === "error") {
      this._emit("error", new FeedError(frame.code, frame.detail, frame));
    }
    this._emit("frame", frame);
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._ready = false;
    this._stopPing();
    this._failAll(new FeedError("disconnected", `connection closed (${code}${reason ? ": " + reason : ""})`));
    if (this._stopped) return;
    if (TERMINAL_CLOSE_CODES.has(code)) {
      this._stopped = true;
      this._setState("closed", { code, reason });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this._attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this._attempt += 1;
    this._setState("reconnecting", { delay, code, reason });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._stopped) this._open();
    }, delay);
  }

  /** Reject requests already sent (their fate is unknown); keep unsent ones queued unless `all`. */
  _failAll(error, all = false) {
    for (const [ref, entry] of this._pending) {
      if (!entry.sent && !all) continue;
      clearTimeout(entry.timer);
      this._pending.delete(ref);
      entry.reject(error);
    }
    if (all) this._outbox = [];
  }

  _startPing() {
    this._stopPing();
    if (!this.pingInterval) return;
    this._pingTimer = setInterval(() => {
      const ws = this._ws;
      this.request({ type: "ping" }).catch((err) => {
        if (err.code === "timeout" && ws && ws === this._ws) ws.close(4000, "no pong"); // dead link
      });
    }, this.pingInterval);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }
}
