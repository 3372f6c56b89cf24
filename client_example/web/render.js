/**
 * render.js — turns one activity into a card element, plus the small formatting helpers it needs
 * (initials, colours, relative times, templates, verbs as sentences). Everything is built with DOM
 * calls and `textContent`, never `innerHTML`: activity fields are user input.
 */

import { hasIcon, icon } from "./icons.js";

// -- formatting helpers ---------------------------------------------------------------------------

/** A stable hue (0–359) for a string, so each actor keeps its avatar colour. */
export function hueOf(text) {
  let h = 0x811c9dc5; // FNV-1a, then a final mix so similar ids ("u-1", "u-2") get distant hues
  for (const ch of String(text)) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) % 360;
}

/** "Alexandra Beaumont" → "AB"; "user-42" → "U4"; "" → "?". */
export function initials(name) {
  const words = String(name || "")
    .split(/[\s_\-.@:]+/)
    .filter(Boolean);
  if (!words.length) return "?";
  const letters = words.length === 1 ? [...words[0]].slice(0, 2) : [[...words[0]][0], [...words[words.length - 1]][0]];
  return letters.join("").toUpperCase();
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "yesterday", "Mon 14 Jan". */
export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.round((now - t) / 1000);
  if (s < -60) return new Date(t).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 2 * 86400) return "yesterday";
  if (s < 7 * 86400) return `${Math.floor(s / 86400)} days ago`;
  return new Date(t).toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
}

/** The display form of an actor, object or target (string or `{id, name|type…}`). */
export function label(ref) {
  if (ref === null || ref === undefined) return "";
  if (typeof ref !== "object") return String(ref);
  if (ref.name) return String(ref.name);
  return [ref.type, ref.id].filter(Boolean).join(" ");
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}/g;

/**
 * Split `template` into parts: `{text}` for literal text and `{value, missing}` for each
 * `{{path}}` looked up in `data` (objects show their `name`, else their `id`).
 */
export function renderTemplate(template, data = {}) {
  const parts = [];
  let last = 0;
  for (const match of String(template).matchAll(PLACEHOLDER)) {
    if (match.index > last) parts.push({ text: template.slice(last, match.index) });
    let value = data;
    for (const key of match[1].split(".")) value = value != null && typeof value === "object" ? value[key] : undefined;
    if (value !== null && typeof value === "object") value = value.name ?? value.id ?? JSON.stringify(value);
    parts.push(value === undefined || value === null ? { value: match[1], missing: true } : { value: String(value) });
    last = match.index + match[0].length;
  }
  if (last < template.length) parts.push({ text: template.slice(last) });
  return parts;
}

// -- verbs as sentences ----------------------------------------------------------------------------

/**
 * Verbs (or their action part, after the last `.`) → the phrase that follows the actor. Verbs not
 * listed get a regular past tense: `booking.confirm` → "confirmed booking …".
 */
export const VERB_PHRASES = {
  "comment.add": "commented on",
  "comment.update": "edited a comment on",
  "comment.delete": "deleted a comment on",
  "reaction.add": "reacted to",
  comment: "commented on",
  mention: "mentioned you in",
  like: "liked",
  follow: "followed",
  share: "shared",
  say: "said something about",
  post: "posted",
  add: "added",
  upload: "uploaded",
  send: "sent",
  pay: "paid",
  make: "made",
  write: "wrote",
  begin: "began",
  finish: "finished",
  check_in: "checked in to",
  checkin: "checked in to",
};

const IRREGULAR = { send: "sent", pay: "paid", make: "made", write: "wrote", begin: "began", buy: "bought", get: "got" };

/** A regular English past tense: confirm → confirmed, update → updated, apply → applied. */
export function pastTense(word) {
  const w = String(word).toLowerCase();
  if (IRREGULAR[w]) return IRREGULAR[w];
  if (/ed$/.test(w)) return w;
  if (/e$/.test(w)) return `${w}d`;
  if (/[^aeiou]y$/.test(w)) return `${w.slice(0, -1)}ied`;
  if (/^(stop|plan|drop|ship|tag|pin|log)$/.test(w)) return `${w}${w.slice(-1)}ed`;
  return `${w}ed`;
}

/** Opaque ids are shortened ("f4d1c8e5" → "f4d1…"; the inspector shows them whole); names are kept. */
export function shortId(id) {
  const text = String(id ?? "");
  if (/^[0-9a-f]{8,}$/i.test(text) || /^[0-9A-Za-z]{20,}$/.test(text)) return `${text.slice(0, 4)}…`;
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

/**
 * The parts of the sentence after the actor: `{phrase, object}` — "confirmed" + "booking f4d1…"
 * for `booking.confirm` on `{id: "f4d1c8e5", type: "booking"}`.
 */
export function verbSentence(activity) {
  const verb = String(activity.verb || "");
  const dot = verb.lastIndexOf(".");
  const noun = dot > 0 ? verb.slice(0, dot).split(".").pop().replace(/_/g, " ") : "";
  const action = dot > 0 ? verb.slice(dot + 1) : verb;
  let phrase = VERB_PHRASES[verb] ?? VERB_PHRASES[action];
  if (phrase === undefined) {
    phrase = /^[A-Za-z]+$/.test(action) ? pastTense(action) : verb.replace(/[._]/g, " ");
  }
  const obj = activity.object;
  let object = "";
  if (obj && typeof obj === "object") {
    object = [obj.type || noun, obj.name || shortId(obj.id)].filter(Boolean).join(" ");
  } else if (obj !== undefined && obj !== null && obj !== "") {
    const text = String(obj);
    object = noun && !text.toLowerCase().startsWith(noun.toLowerCase()) ? `${noun} ${shortId(text)}` : shortId(text);
  }
  return { phrase, object };
}

/** Which icon suits an activity: its `icon` field when we know it, else a guess from the verb. */
export function verbIcon(activity) {
  if (activity.icon && hasIcon(activity.icon)) return activity.icon;
  const verb = String(activity.verb || "").toLowerCase();
  const rules = [
    [/delete|remove|cancel/, "trash"],
    [/comment|reply|message|mention/, "comment"],
    [/pay|invoice|charge|refund/, "card"],
    [/book|reserv|schedul|meeting/, "calendar"],
    [/confirm|approv|complet|done|resolv/, "check"],
    [/like|love|react/, "heart"],
    [/upload|file|attach|document/, "file"],
    [/video|record/, "video"],
    [/join|invite|member|signup|register/, "userPlus"],
    [/update|edit|change|rename/, "edit"],
    [/deploy|release|alert|incident/, "zap"],
  ];
  for (const [pattern, name] of rules) if (pattern.test(verb)) return name;
  return "activity";
}

/** Known emotions → [icon, colour class]; anything else shows its name with a sparkle. */
const EMOTIONS = {
  fire: ["flame", "e-fire"],
  hot: ["flame", "e-fire"],
  love: ["heart", "e-love"],
  heart: ["heart", "e-love"],
  like: ["thumbsUp", "e-like"],
  thumbsup: ["thumbsUp", "e-like"],
  "+1": ["thumbsUp", "e-like"],
  happy: ["smile", "e-happy"],
  smile: ["smile", "e-happy"],
  laugh: ["smile", "e-happy"],
  joy: ["smile", "e-happy"],
  sad: ["frown", "e-sad"],
  angry: ["frown", "e-angry"],
  party: ["star", "e-party"],
  celebrate: ["star", "e-party"],
  tada: ["star", "e-party"],
  star: ["star", "e-party"],
  wow: ["zap", "e-wow"],
  check: ["check", "e-ok"],
  ok: ["check", "e-ok"],
};

// -- DOM helpers ----------------------------------------------------------------------------------

/** `el("span.badge", {title}, child, "text", …)`: a tiny element factory. */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An avatar: the picture when there is one that loads, else coloured initials. */
export function avatar(actor, badgeIcon) {
  const name = typeof actor === "object" && actor ? actor.name || actor.id : actor;
  const id = typeof actor === "object" && actor ? actor.id : actor;
  const box = el("div.avatar", { title: name || "" });
  box.style.setProperty("--hue", String(hueOf(id || name || "?")));
  const fallback = el("span.initials", {}, initials(name));
  const url = typeof actor === "object" && actor ? actor.avatar : null;
  if (url && /^(https?:|data:image\/|\/)/i.test(url)) {
    const img = el("img", { alt: "", src: url, referrerPolicy: "no-referrer", decoding: "async" });
    img.addEventListener("error", () => img.replaceWith(fallback), { once: true });
    box.append(img);
  } else {
    box.append(fallback);
  }
  if (badgeIcon) box.append(el("span.verb-icon", {}, icon(badgeIcon)));
  return box;
}

const AUDIENCE = {
  public: ["globe", "Public"],
  everyone: ["key", "Everyone"],
  members: ["users", "Members"],
  identity: ["user", null],
  role: ["shield", null],
};

/** One audience entry as a badge. */
export function audienceBadge(entry) {
  const e = typeof entry === "string" ? { type: entry.split(":")[0], id: entry.split(":")[1] } : entry || {};
  const [iconName, text] = AUDIENCE[e.type] || ["users", e.type];
  const name = text || (e.type === "identity" ? `@${e.id}` : e.id);
  const title = e.type === "identity" ? `Only ${e.id}` : e.type === "role" ? `Role ${e.id}` : `${text}`;
  return el(
    "span.badge.aud",
    { title: e.notify ? `${title} · notified` : title, dataset: { type: e.type || "" } },
    icon(iconName),
    name,
    e.notify ? icon("bell", "notify") : null,
  );
}

function attachmentChip(att) {
  const kind = att.type === "link" ? "link" : att.type === "video" ? "video" : "file";
  const text = att.name || att.title || att.id || att.url || kind;
  const safeUrl = typeof att.url === "string" && /^https?:\/\//i.test(att.url) ? att.url : null;
  return el(
    safeUrl ? "a.chip.att" : "span.chip.att",
    safeUrl ? { href: safeUrl, target: "_blank", rel: "noopener noreferrer", title: att.url } : { title: text },
    icon(kind),
    el("span", {}, safeUrl && !att.name && !att.title ? shortUrl(safeUrl) : text),
  );
}

function shortUrl(url) {
  try {
    const u = new URL(url);
    return (u.host + (u.pathname === "/" ? "" : u.pathname)).slice(0, 48);
  } catch {
    return url.slice(0, 48);
  }
}

function emotionBadge(emotion) {
  const [iconName, cls] = EMOTIONS[String(emotion).toLowerCase()] || ["sparkles", "e-other"];
  return el(`span.badge.emotion.${cls}`, { title: `Emotion: ${emotion}` }, icon(iconName), String(emotion));
}

function valueText(v) {
  if (v === null || v === undefined) return "∅";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The card for one activity. `now` is for the relative time (refreshed by `refreshTimes`). */
export function activityCard(a, now = Date.now()) {
  const actorName = label(a.actor) || "Someone";
  const { phrase, object } = verbSentence(a);
  // A template is the activity's own sentence (shown below); otherwise the verb reads as one.
  const sentence = a.template
    ? []
    : [
        el("span.phrase", { title: `verb: ${a.verb || ""}` }, phrase),
        object ? el("span.object", { title: label(a.object) }, object) : null,
        a.target ? el("span.target", { title: "target" }, "→ ", label(a.target)) : null,
      ];
  const inspect = el("button.inspect", { type: "button", title: "Show the raw JSON", "aria-label": "Show the raw JSON" }, "{ }");
  inspect.addEventListener("click", (ev) => {
    ev.stopPropagation();
    inspectActivity(a);
  });
  const head = el(
    "div.line",
    {},
    el("strong.actor", {}, actorName),
    sentence,
    el("time.when", { datetime: a.time, title: new Date(a.time).toLocaleString() }, relativeTime(a.time, now)),
    inspect,
  );

  const body = [];
  if (a.template) {
    const parts = renderTemplate(a.template, a.template_data || {});
    body.push(
      el(
        "p.template",
        {},
        parts.map((p) => (p.text !== undefined ? p.text : el(p.missing ? "em.missing" : "b", {}, p.value))),
      ),
    );
  }
  if (a.text) {
    // Long text is clamped to a few lines; a click shows it whole (and folds it again).
    const text = el("p.text.clamp", { title: "" }, a.text);
    text.addEventListener("click", () => text.classList.toggle("expanded"));
    body.push(text);
  }
  if (!a.text && !a.template && a.i18n_key) body.push(el("p.i18n", { title: "i18n key" }, a.i18n_key));
  if (a.changes && typeof a.changes === "object") {
    const rows = Object.entries(a.changes).map(([field, c]) =>
      el(
        "li",
        {},
        el("code", {}, field),
        el("span.from", {}, valueText(c && c.from)),
        el("span.arrow", {}, "→"),
        el("span.to", {}, valueText(c && c.to)),
      ),
    );
    if (rows.length) body.push(el("ul.changes", {}, rows));
  }
  if (Array.isArray(a.attachments) && a.attachments.length) {
    body.push(el("div.attachments", {}, a.attachments.map(attachmentChip)));
  }

  const foot = el(
    "div.foot",
    {},
    a.emotion ? emotionBadge(a.emotion) : null,
    (Array.isArray(a.audience) ? a.audience : []).map(audienceBadge),
    a.version > 1 ? el("span.badge.edited", { title: `version ${a.version}` }, icon("edit"), "edited") : null,
  );

  return el(
    "li.card",
    { dataset: { id: a.id, seq: String(a.seq ?? ""), verb: a.verb || "" } },
    avatar(a.actor, verbIcon(a)),
    el("div.content", {}, head, body, foot),
  );
}

/** Open the raw-JSON inspector for an activity (one shared dialog; Escape or Close closes it). */
export function inspectActivity(a) {
  let dialog = document.querySelector("dialog.inspector");
  if (!dialog) {
    const close = el("button.ghost", { type: "button" }, "Close");
    const copy = el("button.ghost", { type: "button" }, "Copy");
    dialog = el(
      "dialog.inspector",
      { "aria-label": "Activity JSON" },
      el("header", {}, el("h3", {}, "Activity"), el("span.spacer"), copy, close),
      el("pre.json", {}),
    );
    close.addEventListener("click", () => dialog.close());
    copy.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(dialog.querySelector("pre").textContent));
    dialog.addEventListener("click", (ev) => {
      if (ev.target === dialog) dialog.close(); // a click on the backdrop
    });
    document.body.append(dialog);
  }
  dialog.querySelector("h3").textContent = `${a.verb || "activity"} · ${a.id || ""}`;
  dialog.querySelector("pre").textContent = JSON.stringify(a, null, 2);
  if (!dialog.open) dialog.showModal();
  return dialog;
}

/** Re-render every relative time under `root` (called on a timer). */
export function refreshTimes(root, now = Date.now()) {
  for (const t of root.querySelectorAll("time.when[datetime]")) {
    const text = relativeTime(t.getAttribute("datetime"), now);
    if (t.textContent !== text) t.textContent = text;
  }
}
