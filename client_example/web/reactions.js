/**
 * reactions.js — the reaction bar under an activity card (SPEC §12 reactions).
 *
 * Shows the activity's `reaction_counts` by kind, a Like button (pressed when one of the reader's
 * own reactions is a like; pressing it again removes that like), a Comment button that opens a
 * one-line form, and the latest comments. Uses the native endpoints only:
 * `POST /v1/reactions {kind, activity_id, feed, data}`, `DELETE /v1/reactions/{id}`, and the
 * enriched feed read (`with_reaction_counts`, `with_own_reactions`, `with_recent_reactions`).
 *
 * Live: every reaction is a change event of its activity's feed
 * (`{"event": "reaction.added"|"reaction.updated"|"reaction.deleted", "activity": {"id", …, "reaction": {…}}}`).
 * The bar applies the event at once, then re-reads that one activity's counts shortly after (a
 * burst of events costs one read): the read is newer than every event seen so far, so an event
 * that the history read had already counted is never counted twice.
 */

import { icon } from "./icons.js";
import { el } from "./render.js";

/** The enrichment flags every dashboard read asks for. */
export const REACTION_QUERY =
  "with_reaction_counts=true&with_own_reactions=true&with_recent_reactions=true&recent_reactions_limit=3";
const LATEST_COMMENTS = 3;
const REFRESH_MS = 300;
const MAX_COMMENT = 500;

/** `?…` or `…&…` joined with the reaction flags. */
export function withReactions(path) {
  return `${path}${path.includes("?") ? "&" : "?"}${REACTION_QUERY}`;
}

/** True when a read result carries reaction fields (then it is the truth, newer than our counts). */
export function hasReactionFields(activity) {
  return Boolean(activity && typeof activity.reaction_counts === "object" && activity.reaction_counts !== null);
}

export class ReactionBar {
  /**
   * @param {object} ctx   `{api(path, {method, body}), sub(): string|null, toast(text, kind)}`
   * @param {string} feed  the feed the activity is shown in (the server finds a copy's origin)
   * @param {object} activity
   */
  constructor(ctx, feed, activity) {
    this.ctx = ctx;
    this.feed = feed;
    this.id = activity.id;
    this.counts = {};
    this.own = new Map(); // reaction id → the reader's own reaction
    this.comments = []; // newest first
    this.gen = 0; // bumped by each event: a read started before the latest event is stale
    this._timer = null;
    this.busy = false;
    this.node = el("div.reactions", { dataset: { activityId: this.id } });
    this.input = el("input", { name: "comment", placeholder: "Write a comment…", maxLength: MAX_COMMENT, required: true });
    this.form = el(
      "form.comment-form",
      { hidden: true },
      this.input,
      el("button.ghost", { type: "submit" }, "Send"),
    );
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.sendComment();
    });
    this.setFrom(activity);
  }

  /** Take the counts, own reactions and latest comments of an enriched read. */
  setFrom(a) {
    this.counts = { ...(a.reaction_counts || {}) };
    this.own = new Map();
    for (const list of Object.values(a.own_reactions || {})) {
      for (const r of Array.isArray(list) ? list : []) if (r && r.id) this.own.set(r.id, r);
    }
    const latest = (a.latest_reactions || {}).comment;
    this.comments = (Array.isArray(latest) ? latest : []).slice(0, LATEST_COMMENTS);
    this.render();
  }

  /** A `reaction.*` change event of the activity's feed. */
  onEvent(event, reaction) {
    if (!reaction || typeof reaction.kind !== "string") return;
    this.gen++;
    // A child reaction (a reply to a reaction) counts on its parent, not on the activity.
    if (!reaction.parent) {
      const kind = reaction.kind;
      if (event === "reaction.added") {
        this.counts[kind] = (this.counts[kind] || 0) + 1;
        if (reaction.user_id && reaction.user_id === this.ctx.sub()) this.own.set(reaction.id, reaction);
        if (kind === "comment" && !this.comments.some((c) => c.id === reaction.id)) {
          this.comments = [reaction, ...this.comments].slice(0, LATEST_COMMENTS);
        }
      } else if (event === "reaction.deleted") {
        const left = (this.counts[kind] || 0) - 1;
        if (left > 0) this.counts[kind] = left;
        else delete this.counts[kind];
        this.own.delete(reaction.id);
        this.comments = this.comments.filter((c) => c.id !== reaction.id);
      } else if (event === "reaction.updated") {
        if (this.own.has(reaction.id)) this.own.set(reaction.id, reaction);
        this.comments = this.comments.map((c) => (c.id === reaction.id ? reaction : c));
      }
      this.render();
    }
    this.scheduleRefresh();
  }

  /** Re-read this activity's reaction fields soon (coalesces bursts; ignores stale answers). */
  scheduleRefresh() {
    clearTimeout(this._timer);
    const gen = this.gen;
    this._timer = setTimeout(async () => {
      const id = encodeURIComponent(this.id);
      try {
        const page = await this.ctx.api(
          withReactions(`/v1/feeds/${encodeURIComponent(this.feed)}/activities?id_lte=${id}&id_gte=${id}&limit=1`),
        );
        const a = (page.results || []).find((x) => x.id === this.id);
        if (gen === this.gen && a && hasReactionFields(a)) this.setFrom(a);
      } catch {
        // Keep the live counts; the next event or reload corrects them.
      }
    }, REFRESH_MS);
  }

  /** Stop pending work (the card went away). */
  dispose() {
    clearTimeout(this._timer);
    this.gen++;
  }

  ownOf(kind) {
    for (const r of this.own.values()) if (r.kind === kind) return r;
    return null;
  }

  render() {
    const canReact = Boolean(this.ctx.sub());
    const why = canReact ? "" : " (open the dashboard with a token to react)";
    const mine = this.ownOf("like");
    const like = el(
      "button.react",
      {
        type: "button",
        dataset: { kind: "like" },
        "aria-pressed": mine ? "true" : "false",
        disabled: !canReact || this.busy,
        title: (mine ? "Remove your like" : "Like") + why,
      },
      icon("heart"),
      el("span.n", {}, String(this.counts.like || 0)),
    );
    like.addEventListener("click", () => this.toggleLike());
    const comment = el(
      "button.react",
      { type: "button", dataset: { kind: "comment" }, disabled: !canReact, title: `Comment${why}` },
      icon("comment"),
      el("span.n", {}, String(this.counts.comment || 0)),
    );
    comment.addEventListener("click", () => {
      this.form.hidden = !this.form.hidden;
      if (!this.form.hidden) this.input.focus();
    });
    const others = Object.entries(this.counts)
      .filter(([kind, n]) => kind !== "like" && kind !== "comment" && n > 0)
      .map(([kind, n]) => el("span.badge.react-kind", { dataset: { kind }, title: `${n} × ${kind}` }, kind, el("span.n", {}, String(n))));
    const comments = this.comments.length
      ? el(
          "ul.comments",
          {},
          this.comments.map((c) =>
            el("li", { dataset: { id: c.id } }, el("b", {}, String(c.user_id || "someone")), " ", String((c.data && c.data.text) ?? "")),
          ),
        )
      : null;
    this.node.replaceChildren(...[el("div.react-row", {}, like, comment, others), comments, this.form].filter(Boolean));
  }

  async toggleLike() {
    if (this.busy) return;
    const mine = this.ownOf("like");
    this.busy = true;
    this.render();
    try {
      if (mine) {
        await this.ctx.api(`/v1/reactions/${encodeURIComponent(mine.id)}`, { method: "DELETE" });
        this.own.delete(mine.id);
      } else {
        const r = await this.ctx.api("/v1/reactions", { method: "POST", body: { kind: "like", activity_id: this.id, feed: this.feed } });
        if (r && r.id) this.own.set(r.id, r); // the count changes with the event that follows
      }
    } catch (err) {
      this.ctx.toast(`Could not ${mine ? "remove the" : "add a"} like: ${err.message}`, "error");
    } finally {
      this.busy = false;
      this.render();
    }
  }

  async sendComment() {
    const text = this.input.value.trim();
    if (!text) return;
    const send = this.form.querySelector("button");
    send.disabled = true;
    try {
      await this.ctx.api("/v1/reactions", {
        method: "POST",
        body: { kind: "comment", activity_id: this.id, feed: this.feed, data: { text } },
      });
      this.input.value = "";
      this.form.hidden = true;
    } catch (err) {
      this.ctx.toast(`Could not comment: ${err.message}`, "error");
    } finally {
      send.disabled = false;
    }
  }
}
