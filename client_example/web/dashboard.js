/**
 * dashboard.js — the live activity dashboard served at `/demo/`.
 *
 * URL parameters: `token` (a JWT; optional — without it only public feeds can be read), `feed`
 * (repeatable, or comma-separated), `server` (base URL of another feed server; default: this page's
 * origin), `limit` (history page size, default 30). Without a feed it shows a small form.
 *
 * Per feed: history is read over HTTP (`GET /v1/feeds/{feed}/activities`), then every change
 * arrives live through `FeedClient` (feedclient.js), which resumes from the last `(epoch, seq)`
 * after a reconnect. History and live events are merged by activity id, keeping the version with
 * the highest change `seq`, so the order in which the two arrive does not matter. A `reset` or
 * `recovered:false` reloads the history in place.
 *
 * The page sets `document.body.dataset.status` (`connecting`, `live`, `reconnecting`, `closed`)
 * and `data-id`/`data-seq` on each card, for people and tests alike.
 */

import { FeedClient } from "./feedclient.js";
import { GroupState, groupCard, sortKey } from "./groups.js";
import { icon } from "./icons.js";
import { ReactionBar, hasReactionFields, withReactions } from "./reactions.js";
import { activityCard, el, refreshTimes } from "./render.js";

const MAX_ITEMS = 150; // cards kept per column on a screen left open for days
const MAX_GROUPS = 60; // groups kept per aggregated column
const PANEL_GROUPS = 15; // notification groups shown in the panel
const REMOVE_ANIMATION_MS = 450;

/** An HTTP error with the server's RFC 9457 problem body (when there is one). */
class HttpError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * What the token lets its holder do, read from its `feeds` and `admin` claims (not verified here:
 * the server decides; this only hides controls that would be refused). `null` when the token is
 * not a readable JWT (then nothing is hidden).
 */
export function tokenRights(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    const feeds = claims.feeds && typeof claims.feeds === "object" ? claims.feeds : {};
    const rights = (feed) => {
      if (claims.admin === true) return new Set(["read", "write", "member", "admin"]);
      const out = new Set();
      for (const [pattern, names] of Object.entries(feeds)) {
        const matches = pattern.endsWith("*") ? feed.startsWith(pattern.slice(0, -1)) : pattern === feed;
        if (matches && Array.isArray(names)) for (const n of names) out.add(n);
      }
      return out;
    };
    return { sub: claims.sub, canWrite: (feed) => ["write", "admin"].some((r) => rights(feed).has(r)) };
  } catch {
    return null;
  }
}

/** Read `?token=…&feed=…&feed=…` (feeds may also be comma-separated). */
function readParams(search) {
  const params = new URLSearchParams(search);
  const feeds = params
    .getAll("feed")
    .flatMap((f) => f.split(","))
    .map((f) => f.trim())
    .filter(Boolean);
  const limit = Math.min(Math.max(parseInt(params.get("limit") || "30", 10) || 30, 1), 100);
  return { token: params.get("token") || "", feeds: [...new Set(feeds)], server: params.get("server") || "", limit };
}

// -- one column per feed ------------------------------------------------------------------------

class FeedColumn {
  constructor(app, feed) {
    this.app = app;
    this.feed = feed;
    this.items = new Map(); // id → {activity, seq, node, gen}
    this.tombstones = new Map(); // id → seq of its deletion
    this.gen = 0; // bumped on each (re)load: items of an older generation are stale
    this.next = null;
    this.sub = null;
    this.blocked = null; // why this feed cannot be read (one message; nothing else shown then)
    this.bars = new Map(); // activity id → ReactionBar (kept across re-renders of its card)

    this.list = el("ol.items", { "aria-live": "polite" });
    this.count = el("span.count", {}, "");
    this.cursor = el("span.cursor", { title: "resume cursor (epoch · seq)" }, "");
    this.notice = el("div.notice", { hidden: true, role: "status" });
    this.hiddenHint = el("p.hint.hidden-hint", { hidden: true });
    this.empty = el("div.empty", {}, icon("sparkles"), el("p", {}, "Nothing here yet."), el("p.hint", {}, "New activity will appear live."));
    this.more = el("button.more", { type: "button", hidden: true }, "Load older");
    this.more.addEventListener("click", () => this.loadOlder());
    this.root = el(
      "section.column",
      { dataset: { feed } },
      el("header.column-head", {}, el("h2", { title: feed }, feed), el("div.meta", {}, this.count, this.cursor)),
      this.notice,
      this.hiddenHint,
      this.list,
      this.empty,
      this.more,
    );
  }

  /** Subscribe through the shared client; history is (re)loaded once the cursor is known. */
  subscribe(client) {
    this.sub = client.subscribe(this.feed, {
      onSubscribed: (reply, { resumed }) => {
        this.setNotice(null);
        if (!resumed) this.reload();
        this.renderMeta();
      },
      onEvent: (frame) => this.onEvent(frame),
      onReset: ({ reason }) => {
        this.app.toast(`${this.feed}: ${reason === "reset" ? "history changed" : "missed too much"} — reloading`, "warn");
        this.reload();
      },
      onError: (err) => this.block(err.code === "unauthorized" ? 401 : 403, err.detail || err.message),
    });
  }

  /** Read the newest page and merge it in; items not in it (and not touched meanwhile) go away. */
  async reload() {
    const gen = ++this.gen;
    this.tombstones.clear();
    this.root.classList.add("loading");
    try {
      const page = await this.app.api(
        withReactions(`/v1/feeds/${encodeURIComponent(this.feed)}/activities?limit=${this.app.limit}`),
      );
      if (gen !== this.gen) return;
      for (const a of page.results || []) this.merge(a, a.seq ?? 0, { live: false });
      for (const [id, item] of this.items) if (item.gen !== gen) this.remove(id, false);
      this.next = page.next || null;
      this.blocked = null;
      this.setNotice(null);
      this.showHidden(page.hidden);
    } catch (err) {
      if (gen !== this.gen) return;
      if (err.status === 401 || err.status === 403) this.block(err.status, err.message);
      else this.setNotice(`Cannot read history: ${err.message}`, "error");
    } finally {
      if (gen === this.gen) this.root.classList.remove("loading");
      this.renderMeta();
    }
  }

  async loadOlder() {
    if (!this.next) return;
    const gen = this.gen;
    this.more.disabled = true;
    try {
      const page = await this.app.api(withReactions(this.next));
      if (gen !== this.gen) return;
      for (const a of page.results || []) this.merge(a, a.seq ?? 0, { live: false, older: true });
      this.next = page.next || null;
    } catch (err) {
      this.app.toast(`Cannot load older activity: ${err.message}`, "error");
    } finally {
      this.more.disabled = false;
      this.renderMeta();
    }
  }

  /** A live (or replayed) change. */
  onEvent(frame) {
    const activity = frame.activity || {};
    if (activity.aggregation_group && !this.app.groupTypes) {
      // No feed group list from the server, but this feed is aggregated: show it as groups.
      this.app.promote(this.feed);
      return;
    }
    if (String(frame.event).startsWith("reaction.")) {
      // A reaction is a change of its activity's feed, not of the activity: only its bar changes.
      this.bars.get(activity.id)?.onEvent(frame.event, activity.reaction);
    } else if (frame.event === "deleted") {
      this.tombstones.set(activity.id, frame.seq);
      this.remove(activity.id, true);
    } else {
      this.merge(activity, frame.seq, { live: true, updated: frame.event === "updated" });
    }
    this.renderMeta();
    this.app.onFeedEvent(this.feed, frame);
  }

  /** Put `a` (as of change `seq`) in its place, unless we already show a newer state of it. */
  merge(a, seq, { live, updated = false, older = false }) {
    if (!a || !a.id) return;
    const deletedAt = this.tombstones.get(a.id);
    if (deletedAt !== undefined && deletedAt >= seq) return;
    const existing = this.items.get(a.id);
    if (existing && existing.gen === this.gen && existing.seq >= seq) return;
    if (!existing && older && this.items.size >= MAX_ITEMS * 2) return;
    const node = activityCard(a);
    this.attachBar(node, a);
    if (live) node.classList.add(existing || updated ? "changed" : "fresh");
    if (existing) existing.node.remove();
    this.items.set(a.id, { activity: a, seq, node, gen: this.gen });
    this.insertSorted(node, a);
    if (!older) this.trim();
  }

  /** Put the activity's reaction bar in its card (a read's reaction fields refresh the bar). */
  attachBar(node, a) {
    let bar = this.bars.get(a.id);
    if (!bar) {
      bar = new ReactionBar(this.app.reactionContext, this.feed, a);
      this.bars.set(a.id, bar);
    } else if (hasReactionFields(a)) {
      bar.setFrom(a);
    }
    node.querySelector(".content").append(bar.node);
  }

  dropBar(id) {
    this.bars.get(id)?.dispose();
    this.bars.delete(id);
  }

  insertSorted(node, a) {
    const key = sortKey(a);
    for (const child of this.list.children) {
      const other = this.items.get(child.dataset.id);
      if (other && !child.classList.contains("leaving") && sortKey(other.activity) < key) {
        this.list.insertBefore(node, child);
        return;
      }
    }
    this.list.append(node);
  }

  trim() {
    while (this.items.size > MAX_ITEMS) {
      const last = [...this.list.children].reverse().find((n) => !n.classList.contains("leaving"));
      if (!last) break;
      this.remove(last.dataset.id, false);
    }
  }

  remove(id, animate) {
    const item = this.items.get(id);
    if (!item) return;
    this.items.delete(id);
    this.dropBar(id);
    if (!animate) {
      item.node.remove();
      return;
    }
    item.node.classList.add("leaving");
    setTimeout(() => item.node.remove(), REMOVE_ANIMATION_MS);
  }

  /** The feed cannot be read with this token: one clear message instead of the column's content. */
  block(status, detail) {
    const who = this.app.token ? "this token" : "an anonymous reader";
    this.blocked =
      status === 401 && !this.app.token
        ? `${this.feed} is not public: open the dashboard with a token to read it.`
        : `${who[0].toUpperCase()}${who.slice(1)} may not read ${this.feed}${detail ? ` (${detail})` : ""}.`;
    this.root.classList.add("blocked");
    this.setNotice(this.blocked, "error");
    this.renderMeta();
  }

  /** Say that the page left activities out (their audience excludes the reader), not which. */
  showHidden(n) {
    this.hiddenHint.hidden = !n;
    this.hiddenHint.textContent = n
      ? `${n} ${n === 1 ? "activity" : "activities"} here ${n === 1 ? "is" : "are"} not shown to you: ` +
        "their audience leaves you out."
      : "";
  }

  setNotice(text, kind = "info") {
    this.notice.hidden = !text;
    this.notice.className = `notice ${kind}`;
    this.notice.textContent = text || "";
  }

  renderMeta() {
    const n = this.items.size;
    this.count.textContent = `${n} ${n === 1 ? "activity" : "activities"}`;
    const c = this.sub && this.sub.cursor;
    this.cursor.textContent = c && c.epoch ? `seq ${c.seq ?? "…"}` : "";
    this.cursor.title = c && c.epoch ? `resume cursor: epoch ${c.epoch}, seq ${c.seq ?? "unknown"}` : "";
    // The empty state would contradict a "not shown to you" hint or a blocked feed's message.
    this.empty.hidden = n > 0 || this.root.classList.contains("loading") || Boolean(this.blocked) || !this.hiddenHint.hidden;
    this.more.hidden = !this.next || Boolean(this.blocked);
  }
}


// -- one column per aggregated or notification feed ---------------------------------------------

/**
 * An aggregated (or notification) feed, shown as its groups: read from
 * `GET /v1/feeds/{feed}/groups`, then kept up to date by the live events, whose
 * `activity.aggregation_group` names the group each activity joins. Events that arrive while a
 * read is in flight are applied again on top of its answer (each activity keeps the `seq` of its
 * last change, so an event the read already contains changes nothing).
 */
class GroupColumn extends FeedColumn {
  constructor(app, feed, type) {
    super(app, feed);
    this.type = type;
    this.groups = new Map(); // group id → GroupState
    this.where = new Map(); // activity id → group id
    this.buffer = null; // frames received while a read is in flight
    this._reloadTimer = null;
    this.root.classList.add("aggregated");
    this.root.dataset.type = type;
    this.typeBadge = el("span.badge.feed-type", { title: "feed group type" }, type);
    this.root.querySelector(".meta").prepend(this.typeBadge);
  }

  get notification() {
    return this.type === "notification";
  }

  async reload() {
    const gen = ++this.gen;
    this.buffer = [];
    this.tombstones.clear();
    this.root.classList.add("loading");
    try {
      const limit = Math.min(this.app.limit, 25);
      const page = await this.app.api(withReactions(`/v1/feeds/${encodeURIComponent(this.feed)}/groups?limit=${limit}`));
      if (gen !== this.gen) return;
      if (typeof page.unseen === "number" && !this.notification) this.setType("notification");
      for (const g of this.groups.values()) g.node?.remove();
      this.groups.clear();
      this.where.clear();
      for (const g of page.results || []) this.addGroup(g);
      for (const id of [...this.bars.keys()]) if (!this.where.has(id)) this.dropBar(id);
      this.next = page.next || null;
      const missed = this.buffer;
      this.buffer = null;
      for (const frame of missed) this.apply(frame, false);
      this.blocked = null;
      this.setNotice(null);
      this.renderGroups();
    } catch (err) {
      if (gen !== this.gen) return;
      this.buffer = null;
      if (err.status === 401 || err.status === 403) this.block(err.status, err.message);
      else this.setNotice(`Cannot read groups: ${err.message}`, "error");
    } finally {
      if (gen === this.gen) this.root.classList.remove("loading");
      this.renderMeta();
    }
  }

  setType(type) {
    this.type = type;
    this.root.dataset.type = type;
    this.typeBadge.textContent = type;
  }

  async loadOlder() {
    if (!this.next) return;
    const gen = this.gen;
    this.more.disabled = true;
    try {
      const limit = Math.min(this.app.limit, 25);
      const path = `/v1/feeds/${encodeURIComponent(this.feed)}/groups?limit=${limit}&id_lt=${encodeURIComponent(this.next)}`;
      const page = await this.app.api(withReactions(path));
      if (gen !== this.gen) return;
      for (const g of page.results || []) if (!this.groups.has(g.id)) this.addGroup(g);
      this.next = page.next || null;
      this.renderGroups({ trim: false });
    } catch (err) {
      this.app.toast(`Cannot load older groups: ${err.message}`, "error");
    } finally {
      this.more.disabled = false;
      this.renderMeta();
    }
  }

  /** A group from a read: its activities get reaction bars filled from the read. */
  addGroup(g) {
    const state = new GroupState(g, { notification: this.notification });
    state.dirty = true;
    this.groups.set(state.id, state);
    for (const { activity } of state.acts.values()) {
      this.where.set(activity.id, state.id);
      const bar = this.bars.get(activity.id);
      if (!bar) this.bars.set(activity.id, new ReactionBar(this.app.reactionContext, this.feed, activity));
      else if (hasReactionFields(activity)) bar.setFrom(activity);
    }
  }

  onEvent(frame) {
    if (this.buffer && !String(frame.event).startsWith("reaction.")) this.buffer.push(frame);
    this.apply(frame, true);
    this.renderGroups();
    this.renderMeta();
    this.app.onFeedEvent(this.feed, frame);
  }

  /** Apply one change to the groups (idempotent: an older or repeated change does nothing). */
  apply(frame, live) {
    const a = frame.activity || {};
    if (!a.id) return;
    if (String(frame.event).startsWith("reaction.")) {
      this.bars.get(a.id)?.onEvent(frame.event, a.reaction);
      return;
    }
    if (frame.event === "deleted") {
      this.tombstones.set(a.id, frame.seq);
      const group = this.groups.get(this.where.get(a.id));
      const item = group && group.acts.get(a.id);
      if (!item || item.seq >= frame.seq) return;
      this.take(group, a.id);
      return;
    }
    if (frame.event !== "created" && frame.event !== "updated") return;
    const deletedAt = this.tombstones.get(a.id);
    if (deletedAt !== undefined && deletedAt >= frame.seq) return;
    const joins = a.aggregation_group;
    if (!joins || !joins.id) {
      this.soonReload(); // a server that does not say which group: read the groups again
      return;
    }
    const old = this.groups.get(this.where.get(a.id));
    const item = old && old.acts.get(a.id);
    if (item && item.seq >= frame.seq) return;
    if (old && old.id !== joins.id) this.take(old, a.id);
    let group = this.groups.get(joins.id);
    if (!group) {
      group = new GroupState({ id: joins.id, group: joins.group, verb: a.verb, activities: [] }, { notification: this.notification });
      this.groups.set(group.id, group);
    }
    const { aggregation_group: _, ...activity } = a;
    const dropped = group.put(activity, frame.seq);
    if (dropped) {
      this.where.delete(dropped);
      this.dropBar(dropped);
    }
    this.where.set(a.id, group.id);
    if (!this.bars.has(a.id)) this.bars.set(a.id, new ReactionBar(this.app.reactionContext, this.feed, activity));
    group.dirty = true;
    if (live) group.arrival = frame.event === "created" && !item ? "fresh" : "changed";
  }

  /** Take an activity out of its group (and the group away once it is empty). */
  take(group, id) {
    group.drop(id);
    this.where.delete(id);
    this.dropBar(id);
    group.dirty = true;
    if (group.acts.size === 0) {
      group.node?.remove();
      this.groups.delete(group.id);
    }
  }

  soonReload() {
    clearTimeout(this._reloadTimer);
    this._reloadTimer = setTimeout(() => this.reload(), 300);
  }

  /** The card of one activity inside a group (with its reaction bar). */
  activityNode(a) {
    const node = activityCard(a);
    const bar = this.bars.get(a.id);
    if (bar) node.querySelector(".content").append(bar.node);
    return node;
  }

  /** Re-render the groups that changed, newest group first; drop the oldest beyond the cap. */
  renderGroups({ trim = true } = {}) {
    const order = [...this.groups.values()].sort((x, y) => (x.newestKey < y.newestKey ? 1 : -1));
    if (trim) {
      for (const group of order.splice(MAX_GROUPS)) {
        group.node?.remove();
        this.groups.delete(group.id);
        for (const id of group.acts.keys()) {
          this.where.delete(id);
          this.dropBar(id);
        }
      }
    }
    for (const group of order) {
      if (!group.dirty && group.node) continue;
      const node = groupCard(group, { renderActivity: (a) => this.activityNode(a) });
      if (group.arrival) node.classList.add(group.arrival);
      group.arrival = null;
      group.node?.replaceWith(node);
      group.node = node;
      group.dirty = false;
    }
    const current = [...this.list.children];
    if (order.length !== current.length || order.some((g, i) => g.node !== current[i])) {
      this.list.replaceChildren(...order.map((g) => g.node));
    }
  }

  renderMeta() {
    const n = this.groups.size;
    let total = 0;
    for (const g of this.groups.values()) total += g.activityCount;
    this.count.textContent = `${n} ${n === 1 ? "group" : "groups"} · ${total} ${total === 1 ? "activity" : "activities"}`;
    const c = this.sub && this.sub.cursor;
    this.cursor.textContent = c && c.epoch ? `seq ${c.seq ?? "…"}` : "";
    this.empty.hidden = n > 0 || this.root.classList.contains("loading") || Boolean(this.blocked);
    this.more.hidden = !this.next || Boolean(this.blocked);
  }
}

// -- the notification panel -----------------------------------------------------------------------

/**
 * The caller's notification feed `notifications:<sub>` as groups (a notification feed is an
 * aggregated feed whose groups carry `is_seen`/`is_read`): read from
 * `GET /v1/feeds/notifications:<sub>/groups`, whose `unseen`/`unread` group counts drive the bell.
 * Opening the panel marks the groups it shows as seen (`POST …/groups/seen {"ids": […]}`); each
 * group has "Mark read", the header "Mark all as read" (`POST …/groups/read`). The groups are read
 * again (coalesced) when something arrives on the feed and when the live count push
 * (`{"type":"notifications",…}`, sent on every mark, also from the caller's other tabs) arrives.
 * Where the server has no group read (404) the bell stays hidden.
 */
class Notifications {
  constructor(app) {
    this.app = app;
    this.feed = null;
    this.available = false;
    this.groups = [];
    this.unseen = 0;
    this.unread = 0;
    this.newIds = new Set(); // groups that were unseen when the panel opened (highlighted while open)
    this.badge = el("span.badge-count", {}, "");
    this.button = el("button.icon-button.bell", { type: "button", hidden: true, title: "Notifications" }, icon("bell"), this.badge);
    this.counts = el("span.notif-counts", {}, "");
    this.panel = el("div.notif-panel", { hidden: true });
    this.button.addEventListener("click", () => this.toggle());
    this._timer = null;
  }

  get path() {
    return `/v1/feeds/${encodeURIComponent(this.feed)}/groups`;
  }

  /** After `welcome`: watch the caller's notification feed and read its groups. */
  async start(client, sub) {
    this.feed = `notifications:${sub}`;
    if (!client.subscriptions.has(this.feed)) {
      client.subscribe(this.feed, { onEvent: () => this.soon(), onReset: () => this.soon() });
    }
    await this.refresh();
  }

  /** Refresh shortly (coalesces bursts). */
  soon() {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.refresh(), 250);
  }

  async refresh() {
    try {
      const page = await this.app.api(`${this.path}?limit=${PANEL_GROUPS}`);
      this.available = true;
      this.groups = page.results || [];
      this.setCounts(page.unseen, page.unread);
      if (!this.panel.hidden) this.renderPanel();
    } catch (err) {
      if (err.status === 404 || err.status === 405 || err.status === 501) this.hide();
    }
  }

  /** A frame from the socket: the live count push of our notification feed means "read again". */
  onFrame(frame) {
    if (frame.type === "notifications" && this.feed && (!frame.feed || frame.feed === this.feed)) this.soon();
  }

  setCounts(unseen, unread) {
    if (typeof unseen !== "number") return this.hide();
    this.unseen = unseen;
    this.unread = typeof unread === "number" ? unread : 0;
    this.button.hidden = false;
    this.badge.textContent = unseen > 99 ? "99+" : String(unseen);
    this.badge.hidden = unseen === 0;
    this.button.title = `${unseen} unseen, ${this.unread} unread notification groups`;
    this.counts.textContent = `${unseen} unseen · ${this.unread} unread`;
    this.counts.dataset.unseen = String(unseen);
    this.counts.dataset.unread = String(this.unread);
    this.app.setTitleCount(unseen);
  }

  hide() {
    this.available = false;
    this.button.hidden = true;
    this.panel.hidden = true;
    this.app.setTitleCount(0);
  }

  toggle() {
    if (this.panel.hidden) this.open();
    else this.panel.hidden = true;
  }

  /** Show the panel with fresh groups, then mark the ones it shows as seen. */
  async open() {
    this.panel.hidden = false;
    this.newIds = new Set();
    this.renderPanel();
    await this.refresh();
    if (this.panel.hidden) return;
    const ids = this.groups.filter((g) => !g.is_seen).map((g) => g.id);
    this.newIds = new Set(ids);
    this.renderPanel();
    if (!ids.length) return;
    try {
      const counts = await this.app.api(`${this.path}/seen`, { method: "POST", body: { ids } });
      for (const g of this.groups) if (this.newIds.has(g.id)) g.is_seen = true;
      this.setCounts(counts.unseen, counts.unread);
      this.renderPanel();
    } catch (err) {
      this.app.toast(`Could not mark as seen: ${err.message}`, "error");
    }
  }

  /** Mark some groups (or all with `null`) read — which marks them seen too. */
  async markRead(ids) {
    try {
      const counts = await this.app.api(`${this.path}/read`, { method: "POST", body: ids ? { ids } : { all: true } });
      for (const g of this.groups) {
        if (!ids || ids.includes(g.id)) g.is_seen = g.is_read = true;
      }
      this.setCounts(counts.unseen, counts.unread);
      this.renderPanel();
    } catch (err) {
      this.app.toast(`Could not mark as read: ${err.message}`, "error");
    }
  }

  renderPanel() {
    const markAll = el("button.link-button.mark-all-read", { type: "button", disabled: !this.unread }, "Mark all as read");
    markAll.addEventListener("click", (ev) => {
      ev.stopPropagation();
      this.markRead(null);
    });
    const list = this.groups.length
      ? el(
          "ol.items.mini.notif-groups",
          {},
          this.groups.map((g) => {
            const actions = [];
            if (!g.is_read) {
              const read = el("button.link-button.mark-read", { type: "button" }, "Mark read");
              read.addEventListener("click", (ev) => {
                ev.stopPropagation();
                this.markRead([g.id]);
              });
              actions.push(read);
            }
            const node = groupCard(new GroupState(g, { notification: true }), { actions });
            node.classList.toggle("new", this.newIds.has(g.id));
            return node;
          }),
        )
      : el("p.hint", {}, "No notifications.");
    this.panel.replaceChildren(el("header", {}, el("h3", {}, "Notifications"), this.counts, markAll), list);
  }
}

// -- the page -------------------------------------------------------------------------------------

class Dashboard {
  constructor(params) {
    this.token = params.token;
    this.feeds = params.feeds;
    this.limit = params.limit;
    this.base = (params.server || location.origin).replace(/\/+$/, "");
    this.titleBase = `Activity · ${this.feeds.join(", ")}`;
    this.columns = new Map();
    this.statusLabel = el("span.label", {}, "Connecting…");
    this.status = el("div.status", { dataset: { state: "connecting" }, role: "status" }, el("span.dot"), this.statusLabel);
    this.clock = el("time.clock", {}, "");
    this.toasts = el("div.toasts", { "aria-live": "polite" });
    this.notifications = new Notifications(this);
    this._countdown = null;
    this.rights = this.token ? tokenRights(this.token) : null;
    // Feeds the composer offers: those the token may write to (all of them if it cannot be read).
    this.writable = !this.token ? [] : this.rights ? this.feeds.filter((f) => this.rights.canWrite(f)) : this.feeds;
    /** Feed group slug → {type}, from the server's `/demo/feed-groups.json`; null when unknown. */
    this.groupTypes = null;
    // What reaction bars need: the API, who we are (reacting needs an identity), and toasts.
    this.reactionContext = {
      api: (path, options) => this.api(path, options),
      sub: () => (this.client && this.client.sub) || (this.rights && this.rights.sub) || null,
      toast: (text, kind) => this.toast(text, kind),
    };
  }

  /** Which feed groups are aggregated or notification feeds (null if the server does not say). */
  async loadGroupTypes() {
    try {
      const response = await fetch(`${this.base}/demo/feed-groups.json`, { signal: AbortSignal.timeout(3000) });
      const body = response.ok ? await response.json() : null;
      return body && body.feed_groups && typeof body.feed_groups === "object" ? body.feed_groups : null;
    } catch {
      return null;
    }
  }

  /** The type of a feed: its group's (the part before the first `:`); flat when unknown. */
  typeOf(feed) {
    const group = this.groupTypes && this.groupTypes[feed.split(":", 1)[0]];
    return (group && group.type) || "flat";
  }

  /** The column of a feed: groups for aggregated and notification feeds, activities otherwise. */
  newColumn(feed, type = this.typeOf(feed)) {
    return type === "flat" ? new FeedColumn(this, feed) : new GroupColumn(this, feed, type);
  }

  /** A flat column turned out to be an aggregated feed (its events name groups): show groups. */
  promote(feed) {
    const old = this.columns.get(feed);
    if (!old || old instanceof GroupColumn) return;
    const column = this.newColumn(feed, "aggregated");
    this.columns.set(feed, column);
    old.root.replaceWith(column.root);
    column.renderMeta();
    column.subscribe(this.client);
  }

  /** `fetch` against the feed server with the token; JSON in and out; throws `HttpError`. */
  async api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const url = /^https?:/.test(path) ? path : this.base + path;
    const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) throw new HttpError(response.status, data);
    return data;
  }

  async start() {
    document.title = this.titleBase;
    this.groupTypes = await this.loadGroupTypes();
    this.renderShell();
    const wsUrl = new URL("/v1/ws", this.base);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    this.client = new FeedClient(wsUrl.href, { token: this.token || undefined });
    this.client.on("status", (s) => this.renderStatus(s));
    this.client.on("frame", (frame) => this.notifications.onFrame(frame));
    this.client.on("welcome", ({ sub }) => {
      if (sub && !this.notifications.feed) this.notifications.start(this.client, sub);
    });
    this.client.on("error", (err) => this.toast(err.detail || err.message, "error"));
    for (const column of this.columns.values()) column.subscribe(this.client);
    document.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape") return;
      this.notifications.panel.hidden = true; // dialogs (composer, inspector) close on Escape by themselves
      for (const d of document.querySelectorAll("dialog[open]")) d.close();
    });
    document.addEventListener("click", (ev) => {
      const panel = this.notifications.panel;
      if (!panel.hidden && !panel.contains(ev.target) && !this.notifications.button.contains(ev.target)) panel.hidden = true;
    });
    this.client.connect();
    this.tick();
    setInterval(() => this.tick(), 10_000);
  }

  /** Forward events of the notification feed when it is also shown as a column. */
  onFeedEvent(feed) {
    if (feed === this.notifications.feed) this.notifications.soon();
  }

  tick() {
    const now = new Date();
    this.clock.textContent = now.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    this.clock.dateTime = now.toISOString();
    refreshTimes(document.body, now.getTime());
  }

  renderShell() {
    const compose = el("button.primary", { type: "button", hidden: !this.writable.length, title: "Post an activity" }, icon("plus"), "Post");
    compose.addEventListener("click", () => this.openComposer());
    const settings = el("button.icon-button", { type: "button", title: "Change token or feeds" }, icon("settings"));
    settings.addEventListener("click", () => {
      this.client.close();
      showConnectForm(readParams(location.search));
    });
    const header = el(
      "header.topbar",
      {},
      el(
        "div.brand",
        {},
        el("span.logo", {}, icon("activity")),
        el("div", {}, el("h1", {}, "Activity"), el("p.subtitle", {}, this.feeds.length === 1 ? this.feeds[0] : `${this.feeds.length} feeds`)),
      ),
      el("div.spacer"),
      this.clock,
      this.status,
      this.notifications.button,
      compose,
      settings,
    );
    const main = el("main.columns", {});
    main.style.setProperty("--cols", String(Math.min(this.feeds.length, 4)));
    for (const feed of this.feeds) {
      const column = this.newColumn(feed);
      this.columns.set(feed, column);
      main.append(column.root);
      column.renderMeta();
    }
    document.body.replaceChildren(header, this.notifications.panel, main, this.toasts, this.composer());
  }

  renderStatus({ state, delay, code, reason, resumed }) {
    clearInterval(this._countdown);
    const shown = state === "open" ? "live" : state;
    this.status.dataset.state = shown;
    document.body.dataset.status = shown;
    if (state === "open") {
      this.statusLabel.textContent = "Live";
      if (resumed) this.toast("Reconnected — catching up from where we left off", "ok");
    } else if (state === "reconnecting" && delay) {
      const until = Date.now() + delay;
      const show = () => {
        const left = Math.ceil((until - Date.now()) / 1000);
        this.statusLabel.textContent = left > 0 ? `Reconnecting in ${left} s` : "Reconnecting…";
      };
      show();
      this._countdown = setInterval(show, 500);
    } else if (state === "reconnecting" || state === "connecting") {
      this.statusLabel.textContent = state === "connecting" ? "Connecting…" : "Reconnecting…";
    } else if (state === "closed") {
      this.statusLabel.textContent = code === 4001 ? "Token rejected" : code === 4003 ? "Forbidden" : "Disconnected";
      this.status.title = reason || "";
      if (code === 4001) this.toast(`The server refused the token${reason ? `: ${reason}` : ""}`, "error");
    }
  }

  setTitleCount(n) {
    document.title = n ? `(${n}) ${this.titleBase}` : this.titleBase;
  }

  toast(text, kind = "info") {
    const node = el(`div.toast.${kind}`, { role: "status" }, text);
    this.toasts.append(node);
    setTimeout(() => node.classList.add("leaving"), 4000);
    setTimeout(() => node.remove(), 4500);
  }

  // -- composer ---------------------------------------------------------------------------------

  composer() {
    const feedSelect = el("select", { name: "feed" }, this.writable.map((f) => el("option", { value: f }, f)));
    const emotions = ["", "fire", "love", "like", "happy", "party", "wow", "sad"];
    this.form = el(
      "form.compose",
      { method: "dialog" },
      el("h3", {}, "Post an activity"),
      el("label", {}, "Feed", feedSelect),
      el("div.row", {},
        el("label", {}, "Verb", el("input", { name: "verb", value: "comment.add", required: true, maxLength: 255 })),
        el("label", {}, "Object", el("input", { name: "object", placeholder: "e.g. booking:f4d1c8e5", value: "dashboard" })),
      ),
      el("label", {}, "Text", el("textarea", { name: "text", rows: 3, placeholder: "What happened?", required: true })),
      el("div.row", {},
        el("label", {}, "Emotion", el("select", { name: "emotion" }, emotions.map((e) => el("option", { value: e }, e || "—")))),
        el("label", {}, "Audience", el("select", { name: "audience" },
          ["members", "everyone", "public"].map((a) => el("option", { value: a }, a)))),
      ),
      el("label", {}, "Link (optional)", el("input", { name: "link", type: "url", placeholder: "https://…" })),
      el("p.error", { hidden: true }),
      el("div.actions", {},
        el("button.ghost", { type: "button", value: "cancel", onclick: () => this.dialog.close() }, "Cancel"),
        el("button.primary", { type: "submit" }, "Post"),
      ),
    );
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submitComposer();
    });
    this.dialog = el("dialog.composer", {}, this.form);
    return this.dialog;
  }

  openComposer() {
    this.form.querySelector(".error").hidden = true;
    this.dialog.showModal();
    this.form.elements.text.focus();
  }

  async submitComposer() {
    const f = this.form.elements;
    const activity = { verb: f.verb.value.trim(), object: f.object.value.trim() || "dashboard", text: f.text.value.trim() };
    if (f.emotion.value) activity.emotion = f.emotion.value;
    activity.audience = [f.audience.value];
    if (f.link.value.trim()) activity.attachments = [{ type: "link", url: f.link.value.trim() }];
    const submit = this.form.querySelector("button[type=submit]");
    const error = this.form.querySelector(".error");
    submit.disabled = true;
    try {
      const [stored] = await this.client.publish(f.feed.value, activity, { timeout: 8000 });
      this.dialog.close();
      f.text.value = "";
      this.toast(`Posted to ${f.feed.value}${stored && stored.seq ? ` (seq ${stored.seq})` : ""}`, "ok");
    } catch (err) {
      error.hidden = false;
      error.textContent = err.detail || err.message;
    } finally {
      submit.disabled = false;
    }
  }
}

// -- the connect form -----------------------------------------------------------------------------

function showConnectForm(params) {
  const feeds = el("textarea", { name: "feeds", rows: 3, required: true, placeholder: "booking:f4d1c8e5\nuser:42" });
  feeds.value = params.feeds.join("\n");
  const token = el("textarea", { name: "token", rows: 3, placeholder: "eyJhbGciOi… (leave empty for public feeds)" });
  token.value = params.token;
  const form = el(
    "form.connect-card",
    {},
    el("div.brand", {}, el("span.logo", {}, icon("activity")), el("h1", {}, "Activity dashboard")),
    el("p.hint", {}, "Shows each feed's history, then every change live. Keep it open on a screen."),
    el("label", {}, "Feeds (one per line)", feeds),
    el("label", {}, "Token", token),
    el("div.actions", {}, el("button.primary", { type: "submit" }, "Open dashboard")),
    el("p.hint.small", {}, "Tip: bookmark the resulting URL — it carries ", el("code", {}, "?token=…&feed=…"), "."),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    if (token.value.trim()) next.set("token", token.value.trim());
    for (const f of feeds.value.split(/[\s,]+/).filter(Boolean)) next.append("feed", f);
    if (params.server) next.set("server", params.server);
    location.search = next.toString();
  });
  document.body.dataset.status = "setup";
  document.body.replaceChildren(el("div.connect", {}, form));
}

const params = readParams(location.search);
if (params.feeds.length) new Dashboard(params).start();
else showConnectForm(params);
