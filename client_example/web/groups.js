/**
 * groups.js — aggregated and notification feed groups (SPEC §12) for the dashboard.
 *
 * A group as read from `GET /v1/feeds/{feed}/groups` is `{id, group, verb, activities,
 * activity_count, actor_count, created_at, updated_at}` (plus `is_seen`/`is_read` on a notification
 * feed). `GroupState` keeps one group and applies live changes to it: a live `created`/`updated`
 * event of an aggregated feed carries `activity.aggregation_group: {id, group}`, the group the
 * activity joins, so groups update without being read again.
 */

import { icon } from "./icons.js";
import { avatar, el, inspectActivity, label, relativeTime, verbIcon, verbSentence } from "./render.js";

/** Activities kept per group in the page (older ones only count). */
export const MAX_PER_GROUP = 50;

/** An actor's identity: its `id` (objects) or itself (strings). */
export function actorKey(actor) {
  if (actor && typeof actor === "object") return String(actor.id ?? actor.name ?? "");
  return String(actor ?? "");
}

/** Newest first: by time, then id (ULIDs sort by time too). */
export function sortKey(a) {
  return `${a.time || ""}|${a.id || ""}`;
}

/**
 * The sentence of a group: "Alexandra Beaumont and 2 others liked booking f4d1…". `activities`
 * newest first; `actorCount` is the group's `actor_count`. Returns `{who, others, phrase, object}`.
 */
export function groupSentence(activities, actorCount, verb = "") {
  const names = [];
  const seen = new Set();
  for (const a of activities) {
    const key = actorKey(a.actor);
    if (seen.has(key)) continue;
    seen.add(key);
    names.push(label(a.actor) || "Someone");
  }
  const who = names[0] || "Someone";
  const rest = Math.max(0, (actorCount || names.length) - 1);
  let others = "";
  if (rest === 1 && names[1]) others = ` and ${names[1]}`;
  else if (rest >= 1) others = ` and ${rest} ${rest === 1 ? "other" : "others"}`;
  const first = activities[0] || { verb };
  const { phrase } = verbSentence(first);
  const objects = [...new Set(activities.map((a) => verbSentence(a).object).filter(Boolean))];
  const object = objects.length <= 1 ? objects[0] || "" : `${objects.length} things`;
  return { who, others, phrase, object };
}

/** One group, kept up to date by live events. */
export class GroupState {
  constructor(g, { notification = false } = {}) {
    this.id = g.id;
    this.key = g.group ?? "";
    this.verb = g.verb ?? "";
    this.notification = notification;
    this.isSeen = g.is_seen ?? !notification;
    this.isRead = g.is_read ?? !notification;
    this.acts = new Map(); // id → {activity, seq}
    const given = Array.isArray(g.activities) ? g.activities : [];
    for (const a of given) if (a && a.id) this.acts.set(a.id, { activity: a, seq: a.seq ?? 0 });
    // Activities (and their actors) the server counted but did not list, if it ever caps the list.
    this.extraActs = Math.max(0, (g.activity_count ?? given.length) - this.acts.size);
    this.extraActors = Math.max(0, (g.actor_count ?? 0) - this.actorKeys().size);
    this.node = null;
  }

  actorKeys() {
    return new Set([...this.acts.values()].map((x) => actorKey(x.activity.actor)));
  }

  get activityCount() {
    return this.acts.size + this.extraActs;
  }

  get actorCount() {
    return this.actorKeys().size + this.extraActors;
  }

  /** The listed activities, newest first. */
  newest() {
    return [...this.acts.values()].map((x) => x.activity).sort((x, y) => (sortKey(x) < sortKey(y) ? 1 : -1));
  }

  get newestKey() {
    const [first] = this.newest();
    return first ? sortKey(first) : "";
  }

  /**
   * Add or replace an activity (live); a new one makes a notification group unseen again.
   * Returns the id of an activity dropped to keep the group small (it still counts), or null.
   */
  put(activity, seq) {
    const existed = this.acts.has(activity.id);
    this.acts.set(activity.id, { activity, seq });
    if (!existed) {
      this.isSeen = !this.notification;
      this.isRead = !this.notification;
    }
    if (this.acts.size <= MAX_PER_GROUP) return null;
    const [oldest] = this.newest().slice(-1);
    this.drop(oldest.id);
    this.extraActs += 1;
    if (!this.actorKeys().has(actorKey(oldest.actor))) this.extraActors += 1;
    return oldest.id;
  }

  drop(id) {
    this.acts.delete(id);
  }

  /** The group as JSON, for the inspector. */
  toJSON() {
    return {
      id: this.id,
      group: this.key,
      verb: this.verb,
      activity_count: this.activityCount,
      actor_count: this.actorCount,
      ...(this.notification ? { is_seen: this.isSeen, is_read: this.isRead } : {}),
      activities: this.newest().map((a) => a.id),
    };
  }
}

/**
 * The card of one group. `renderActivity(a)` makes the card of one listed activity; `shown` is how
 * many of the newest are listed; `actions` are extra nodes for the footer (e.g. "Mark read").
 */
export function groupCard(state, { renderActivity, shown = 3, actions = [], now = Date.now() } = {}) {
  const activities = state.newest();
  const { who, others, phrase, object } = groupSentence(activities, state.actorCount, state.verb);
  const first = activities[0] || {};
  const inspect = el("button.inspect", { type: "button", title: "Show the group's JSON", "aria-label": "Show the group's JSON" }, "{ }");
  inspect.addEventListener("click", (ev) => {
    ev.stopPropagation();
    inspectActivity(state.toJSON());
  });
  const faces = [];
  const seen = new Set();
  for (const a of activities) {
    const key = actorKey(a.actor);
    if (seen.has(key)) continue;
    seen.add(key);
    faces.push(avatar(a.actor, faces.length === 0 ? verbIcon(first) : null));
    if (faces.length === 3) break;
  }
  const n = state.activityCount;
  const people = state.actorCount;
  const hiddenCount = n - Math.min(shown, activities.length);
  const node = el(
    "li.card.group-card",
    {
      dataset: {
        groupId: state.id,
        group: state.key,
        activityCount: String(n),
        actorCount: String(people),
        ...(state.notification ? { seen: String(state.isSeen), read: String(state.isRead) } : {}),
      },
    },
    el("div.faces", {}, faces),
    el(
      "div.content",
      {},
      el(
        "div.line.group-sentence",
        {},
        el("strong.actor", {}, who),
        others ? el("span.others", {}, others) : null,
        el("span.phrase", { title: `verb: ${state.verb || first.verb || ""}` }, phrase),
        object ? el("span.object", {}, object) : null,
        first.time ? el("time.when", { datetime: first.time, title: new Date(first.time).toLocaleString() }, relativeTime(first.time, now)) : null,
        inspect,
      ),
      el(
        "div.foot",
        {},
        el("span.badge.g-activities", { title: "activity_count" }, icon("activity"), `${n} ${n === 1 ? "activity" : "activities"}`),
        el("span.badge.g-actors", { title: "actor_count" }, icon("users"), `${people} ${people === 1 ? "actor" : "actors"}`),
        el("span.badge.g-key", { title: "group (the rendered aggregation_format)" }, el("code", {}, state.key)),
        state.notification && !state.isSeen ? el("span.badge.g-new", {}, "new") : null,
        state.notification && !state.isRead ? el("span.badge.g-unread", {}, "unread") : null,
        actions,
      ),
      renderActivity && activities.length
        ? el("ol.items.mini.group-items", {}, activities.slice(0, shown).map(renderActivity))
        : null,
      renderActivity && hiddenCount > 0
        ? el("p.hint.group-more", {}, `+ ${hiddenCount} more ${hiddenCount === 1 ? "activity" : "activities"}`)
        : null,
    ),
  );
  node.classList.toggle("unseen", state.notification && !state.isSeen);
  node.classList.toggle("unread", state.notification && !state.isRead);
  return node;
}
