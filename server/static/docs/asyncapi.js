// Renders /asyncapi.json (the WebSocket protocol, AsyncAPI 3.0): operations with their messages,
// payload schemas and examples, plus a small console to try the protocol with a token.
(function () {
  "use strict";
  var root = document.getElementById("asyncapi");
  var TOKEN_KEY = "feedserver.docs.token";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function resolve(doc, ref) {
    return ref.replace(/^#\//, "").split("/").reduce(function (node, key) {
      return node && node[key.replace(/~1/g, "/").replace(/~0/g, "~")];
    }, doc);
  }

  function deref(doc, node) { return node && node.$ref ? deref(doc, resolve(doc, node.$ref)) : node; }

  // A schema with the component schemas it uses inlined once (cycles stay as $ref).
  function inline(doc, schema, seen) {
    if (Array.isArray(schema)) return schema.map(function (s) { return inline(doc, s, seen); });
    if (!schema || typeof schema !== "object") return schema;
    if (schema.$ref) {
      if (seen.indexOf(schema.$ref) >= 0) return { $ref: schema.$ref };
      return inline(doc, resolve(doc, schema.$ref), seen.concat([schema.$ref]));
    }
    var out = {};
    Object.keys(schema).forEach(function (k) { out[k] = inline(doc, schema[k], seen); });
    return out;
  }

  // "string", "integer ≥ 1", "Activity", "string | null", "\"subscribe\"" …
  function typeOf(doc, s) {
    if (!s) return "any";
    if (s.$ref) return s.$ref.split("/").pop();
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map(function (v) { return JSON.stringify(v); }).join(" | ");
    if (s.anyOf || s.oneOf) return (s.anyOf || s.oneOf).map(function (x) { return typeOf(doc, x); }).join(" | ");
    if (s.type === "array") return typeOf(doc, s.items) + "[]";
    var t = s.type || (s.properties ? "object" : "any");
    if (s.minimum !== undefined) t += " ≥ " + s.minimum;
    if (s.maxLength !== undefined) t += " (≤ " + s.maxLength + " chars)";
    return t;
  }

  function fields(doc, schema) {
    var s = deref(doc, schema);
    var required = s.required || [];
    var rows = Object.keys(s.properties || {}).map(function (name) {
      var p = s.properties[name];
      return el("tr", {}, [
        el("td", {}, [el("code", { text: name })]),
        el("td", { text: typeOf(doc, p) }),
        el("td", { text: required.indexOf(name) >= 0 ? "required" : "" }),
        el("td", { text: p.description || "" }),
      ]);
    });
    return el("table", {}, rows);
  }

  function message(doc, ref) {
    var msg = deref(doc, ref);
    var box = el("div", {}, [
      el("h4", { text: msg.title + " — " + (msg.summary || "") }),
      fields(doc, msg.payload),
      el("details", {}, [
        el("summary", { text: "JSON schema" }),
        el("pre", { text: JSON.stringify(inline(doc, msg.payload, []), null, 2) }),
      ]),
    ]);
    (msg.examples || []).forEach(function (ex) {
      box.appendChild(el("p", { text: "Example:" }));
      box.appendChild(el("pre", { text: JSON.stringify(ex.payload) }));
    });
    return box;
  }

  function operation(doc, name, op) {
    var head = el("summary", {}, [
      el("span", { class: "badge " + op.action, text: op.action === "receive" ? "client →" : "← server" }),
      el("strong", { text: name }),
      document.createTextNode(" " + (op.summary || "")),
    ]);
    var body = el("details", { class: "op", id: "op-" + name }, [head]);
    op.messages.forEach(function (m) { body.appendChild(message(doc, m)); });
    if (op.reply) {
      body.appendChild(el("p", { text: "Replies:" }));
      op.reply.messages.forEach(function (m) { body.appendChild(message(doc, m)); });
    }
    return body;
  }

  function console_(doc) {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + doc.channels.feeds.address;
    var token = el("input", { placeholder: "JWT (feedserver token …)", value: localStorage.getItem(TOKEN_KEY) || "" });
    var input = el("textarea", {}, []);
    input.value = JSON.stringify({ type: "subscribe", feed: "demo:lobby", ref: 1 });
    var log = el("textarea", { class: "log", readonly: "readonly" }, []);
    var ws = null;
    function write(line) { log.value += line + "\n"; log.scrollTop = log.scrollHeight; }
    var connect = el("button", { type: "button", text: "Connect" });
    var send = el("button", { type: "button", text: "Send" });
    connect.onclick = function () {
      if (ws) ws.close();
      localStorage.setItem(TOKEN_KEY, token.value.trim());
      ws = new WebSocket(url);
      ws.onopen = function () {
        write("open " + url);
        if (token.value.trim()) ws.send(JSON.stringify({ type: "auth", token: token.value.trim() }));
      };
      ws.onmessage = function (e) { write("← " + e.data); };
      ws.onclose = function (e) { write("closed " + e.code + " " + e.reason); ws = null; };
    };
    send.onclick = function () {
      if (!ws) return write("not connected");
      ws.send(input.value);
      write("→ " + input.value);
    };
    return el("div", { class: "console" }, [token, connect, input, send, log]);
  }

  fetch("/asyncapi.json").then(function (r) { return r.json(); }).then(function (doc) {
    root.textContent = "";
    root.appendChild(el("h1", { text: doc.info.title + " " + doc.info.version }));
    root.appendChild(el("p", { text: doc.info.description }));
    root.appendChild(el("p", { text: "Channel: " + doc.channels.feeds.address + " (AsyncAPI " + doc.asyncapi + ")" }));
    root.appendChild(el("h2", { text: "Commands (client → server) and their replies" }));
    var ops = doc.operations;
    Object.keys(ops).filter(function (n) { return ops[n].action === "receive"; })
      .forEach(function (n) { root.appendChild(operation(doc, n, ops[n])); });
    root.appendChild(el("h2", { text: "Events (server → client)" }));
    Object.keys(ops).filter(function (n) { return ops[n].action === "send"; })
      .forEach(function (n) { root.appendChild(operation(doc, n, ops[n])); });
    root.appendChild(el("h2", { text: "Close codes" }));
    var codes = doc["x-close-codes"] || {};
    root.appendChild(el("table", {}, Object.keys(codes).map(function (c) {
      return el("tr", {}, [el("td", {}, [el("code", { text: c })]), el("td", { text: codes[c] })]);
    })));
    root.appendChild(el("h2", { text: "Try it" }));
    root.appendChild(console_(doc));
  }).catch(function (err) { root.textContent = "Could not load /asyncapi.json: " + err; });
})();
