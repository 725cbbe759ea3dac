// pgvault console. Everything from the server (names, tags, descriptions, messages) goes into
// the page as text (textContent), never as HTML. A value is fetched only on an explicit
// "Reveal" click and is forgotten again on "Hide"; it is never put back into a form.
"use strict";

const state = { csrf: null, user: null, rights: {}, secrets: [], editing: null };
const $ = (id) => document.getElementById(id);
// How long a copied value stays on the clipboard.
const COPY_SECONDS = 20;

// el("td", {class: "x"}, "text", child): an element whose string children are text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

function show(message, info) {
  const m = $("message");
  m.textContent = message;
  m.className = info ? "info" : "";
  m.hidden = !message;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (r.status !== 204) {
    try { data = await r.json(); } catch (_) { data = null; }
  }
  if (!r.ok) {
    const err = new Error(explain(r.status, data));
    err.status = r.status;
    if (r.status === 401 && state.user && path !== "/api/v1/session") loggedOut();
    throw err;
  }
  return data;
}

function explain(status, data) {
  const msg = data && data.error ? data.error : "request failed (" + status + ")";
  if (status === 403 && data && data.sqlstate === "42501") {
    return "Permission denied: " + msg + (data.hint ? " (" + data.hint + ")" : "");
  }
  return msg + (data && data.hint ? " (" + data.hint + ")" : "");
}

function loggedOut() {
  state.csrf = null; state.user = null; state.rights = {};
  $("main-view").hidden = true; $("editor").hidden = true; $("versions").hidden = true; $("audit").hidden = true; $("grants").hidden = true;
  $("keys").hidden = true; $("verify").hidden = true;
  $("logout").hidden = true; $("whoami").textContent = "";
  $("login-view").hidden = false;
}

function loggedIn(s) {
  state.csrf = s.csrf_token; state.user = s.user; state.rights = s.rights || {};
  $("whoami").textContent = "Logged in as " + s.user + (state.rights.admin ? " (vault_admin)" : state.rights.read ? " (vault_reader)" : state.rights.view ? " (vault_viewer)" : " (no vault role)");
  $("login-view").hidden = true; $("main-view").hidden = false; $("logout").hidden = false;
  $("new-secret").hidden = !state.rights.admin;
  $("show-audit").hidden = !state.rights.admin;
  $("show-keys").hidden = !state.rights.keys;
  $("show-verify").hidden = !state.rights.verify;
  load();
}

async function load() {
  try {
    const tag = $("filter-tag").value.trim();
    state.secrets = await api("GET", "/api/v1/secrets" + (tag ? "?tag=" + encodeURIComponent(tag) : ""));
    render();
  } catch (e) { show(e.message); }
}

function fmt(ts) { return ts ? ts.replace("T", " ").replace("Z", " UTC") : ""; }
// A time in the list: the date, and under it the time of day (the columns stay narrow).
function when(ts, note) {
  const [date, time] = fmt(ts).split(" ");
  return [el("span", { class: "date" }, date), el("span", { class: "time" }, time + " UTC" + (note || ""))];
}

function render() {
  const body = $("secrets-body");
  body.replaceChildren();
  const filter = $("filter-name").value.trim().toLowerCase();
  const rows = state.secrets.filter((s) => !filter || (s.name || "").toLowerCase().includes(filter));
  for (const s of rows) body.append(row(s));
  $("empty").hidden = rows.length > 0;
}

function row(s) {
  const name = s.name === null ? "(unnamed " + s.id + ")" : s.name;
  const value = el("span", { class: "masked" }, s.masked);
  const actions = el("td", { class: "actions" });
  const tr = el("tr", { "data-name": name, class: s.expired ? "expired" : s.expiring_soon ? "expiring" : "" },
    el("td", { class: "name" }, name),
    el("td", { class: "value", "data-label": "Value" }, value),
    el("td", { class: "tags", "data-label": "Tags" }, ...s.tags.map((t) => el("span", { class: "tag" }, t))),
    el("td", { class: "description", "data-label": "Description" }, s.description),
    el("td", { class: "expires", "data-label": "Expires" },
      ...(s.expires_at ? when(s.expires_at, s.expired ? " (expired)" : s.expiring_soon ? " (soon)" : "") : ["never"])),
    el("td", { class: "created", "data-label": "Created" }, ...when(s.created_at)),
    el("td", { class: "updated", "data-label": "Updated" }, ...when(s.updated_at)),
    actions);
  if (s.name === null) return tr;
  if (state.rights.read) {
    const b = el("button", { type: "button", class: "reveal" }, "Reveal");
    const copy = el("button", { type: "button", class: "copy" }, "Copy");
    copy.hidden = true;
    const hide = () => { value.textContent = s.masked; value.className = "masked"; b.textContent = "Reveal"; copy.hidden = true; };
    b.addEventListener("click", async () => {
      if (b.textContent === "Hide") { hide(); return; }
      try {
        const full = await api("GET", "/api/v1/secrets/" + encodeURIComponent(s.name));
        value.textContent = full.value; value.className = "revealed"; b.textContent = "Hide"; copy.hidden = false;
      } catch (e) { show(e.message); }
    });
    // Copies the revealed value; the clipboard is emptied again after COPY_SECONDS (if the page
    // is still open), and the value is hidden again.
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(value.textContent);
        copy.textContent = "Copied (cleared in " + COPY_SECONDS + " s)";
        setTimeout(async () => {
          try { await navigator.clipboard.writeText(""); } catch (_) { /* the page lost focus */ }
          copy.textContent = "Copy"; hide();
        }, COPY_SECONDS * 1000);
      } catch (e) { show("Cannot copy: " + e.message); }
    });
    actions.append(b, copy);
  }
  if (state.rights.admin) {
    actions.append(el("button", { type: "button", class: "edit", onclick: () => edit(s) }, "Edit"));
    actions.append(el("button", { type: "button", class: "show-versions", onclick: () => versions(s.name) }, "Versions"));
    actions.append(el("button", { type: "button", class: "show-grants", onclick: () => grants(s.name) }, "Grants"));
    const del = el("button", { type: "button", class: "danger delete" }, "Delete");
    del.addEventListener("click", () => {
      const yes = el("button", { type: "button", class: "danger confirm-delete" }, "Really delete");
      const no = el("button", { type: "button", class: "cancel-delete" }, "Keep");
      yes.addEventListener("click", async () => {
        try { await api("DELETE", "/api/v1/secrets/" + encodeURIComponent(s.name)); show("Deleted " + s.name, true); load(); }
        catch (e) { show(e.message); }
      });
      no.addEventListener("click", () => { yes.remove(); no.remove(); del.hidden = false; });
      del.hidden = true;
      actions.append(yes, no);
    });
    actions.append(del);
  }
  return tr;
}

function edit(s) {
  state.editing = s || null;
  $("editor-title").textContent = s ? "Edit " + s.name : "New secret";
  $("edit-name").value = s ? s.name : "";
  $("edit-name").readOnly = !!s;
  $("edit-value").value = "";
  $("edit-value").placeholder = s ? "leave empty to keep the value" : "";
  $("edit-value").required = !s;
  $("edit-description").value = s ? s.description : "";
  $("edit-tags").value = s ? s.tags.join(",") : "";
  $("edit-expires").value = s && s.expires_at ? s.expires_at : "";
  $("editor").hidden = false;
  // The form opens above the list, where the toolbar's button is; from a row further down, it
  // is scrolled to where the user is looking.
  $("editor").scrollIntoView({ block: "nearest" });
  (s ? $("edit-value") : $("edit-name")).focus();
}

async function save(ev) {
  ev.preventDefault();
  const s = state.editing;
  const name = $("edit-name").value;
  const body = {
    description: $("edit-description").value,
    tags: $("edit-tags").value.split(",").map((t) => t.trim()).filter((t) => t),
    expires_at: $("edit-expires").value.trim() || null,
  };
  if ($("edit-value").value) body.value = $("edit-value").value;
  if (s && s.version !== null && s.version !== undefined) body.expected_version = s.version;
  try {
    await api("PUT", "/api/v1/secrets/" + encodeURIComponent(name), body);
    $("edit-value").value = "";
    $("editor").hidden = true;
    show((s ? "Saved " : "Created ") + name, true);
    load();
  } catch (e) {
    show(e.status === 409 ? e.message + " (someone changed it: reload and edit again)" : e.message);
  }
}

async function versions(name) {
  try {
    const list = await api("GET", "/api/v1/secrets/" + encodeURIComponent(name) + "/versions");
    $("versions-title").textContent = "Versions of " + name;
    const body = $("versions-body");
    body.replaceChildren();
    for (const v of list) {
      const cell = el("td");
      if (!v.current) {
        cell.append(el("button", { type: "button", class: "rollback", onclick: async () => {
          try {
            const r = await api("POST", "/api/v1/secrets/" + encodeURIComponent(name) + "/rollback", { version: v.version });
            show("Rolled " + name + " back to version " + v.version + " (now version " + r.version + ")", true);
            load(); versions(name);
          } catch (e) { show(e.message); }
        } }, "Roll back to this"));
      }
      body.append(el("tr", {}, el("td", {}, String(v.version)), el("td", {}, v.current ? "current" : "replaced"),
        el("td", {}, fmt(v.at)), el("td", {}, v.replaced_by || ""), cell));
    }
    $("versions").hidden = false;
  } catch (e) { show(e.message); }
}

async function grants(name) {
  try {
    const list = await api("GET", "/api/v1/secrets/" + encodeURIComponent(name) + "/grants");
    state.grantsOf = name;
    $("grants-title").textContent = "Grants on " + name + (list.length ? "" : " (none: every vault_reader may read it)");
    const body = $("grants-body");
    body.replaceChildren();
    for (const g of list) {
      body.append(el("tr", {}, el("td", {}, g.role), el("td", {}, g.granted_by), el("td", {}, fmt(g.at)),
        el("td", {}, el("button", { type: "button", class: "revoke", onclick: async () => {
          try {
            await api("DELETE", "/api/v1/secrets/" + encodeURIComponent(name) + "/grants/" + encodeURIComponent(g.role));
            show("Revoked " + g.role + "'s grant on " + name, true); grants(name);
          } catch (e) { show(e.message); }
        } }, "Revoke"))));
    }
    $("grants").hidden = false;
  } catch (e) { show(e.message); }
}

async function addGrant(ev) {
  ev.preventDefault();
  const name = state.grantsOf, role = $("grant-role").value.trim();
  try {
    await api("PUT", "/api/v1/secrets/" + encodeURIComponent(name) + "/grants/" + encodeURIComponent(role));
    $("grant-role").value = "";
    show(role + " may read " + name, true); grants(name);
  } catch (e) { show(e.message); }
}

async function audit() {
  try {
    const rows = await api("GET", "/api/v1/audit?limit=200");
    const body = $("audit-body");
    body.replaceChildren();
    for (const a of rows.reverse()) {
      body.append(el("tr", {}, el("td", {}, fmt(a.at)), el("td", {}, a.role), el("td", {}, a.action),
        el("td", {}, a.secret_name || a.secret_id || ""), el("td", {}, a.detail)));
    }
    $("audit").hidden = false;
  } catch (e) { show(e.message); }
}

async function keys() {
  try {
    const rows = await api("GET", "/api/v1/keys");
    const body = $("keys-body");
    body.replaceChildren();
    for (const k of rows) {
      body.append(el("tr", { "data-key": k.id, class: k.default ? "default-key" : k.status === "invalid" ? "expired" : "" },
        el("td", {}, k.name || ""), el("td", {}, k.type), el("td", { class: "key-status" }, k.status),
        el("td", {}, String(k.secrets)), el("td", {}, k.root_key), el("td", {}, fmt(k.created_at)),
        el("td", {}, k.expires_at ? fmt(k.expires_at) : "never"), el("td", { class: "id" }, k.id)));
    }
    $("keys").hidden = false;
  } catch (e) { show(e.message); }
}

async function verify() {
  $("verify-summary").textContent = "Checking every secret and kept version...";
  $("verify-body").replaceChildren();
  $("verify").hidden = false;
  try {
    const r = await api("GET", "/api/v1/verify");
    $("verify-summary").textContent = r.problems.length
      ? r.checked + " values checked: " + r.problems.length + " need attention"
      : r.checked + " values checked: all decrypt";
    for (const p of r.problems) {
      $("verify-body").append(el("tr", { class: p.status === "ok" ? "" : "expired" },
        el("td", { class: "name" }, p.name === null ? "(unnamed " + p.id + ")" : p.name),
        el("td", { class: "verify-status" }, p.status), el("td", {}, p.detail || ""), el("td", { class: "id" }, p.key_id || "default key (id unset)")));
    }
  } catch (e) { $("verify-summary").textContent = ""; show(e.message); }
}

async function login(ev) {
  ev.preventDefault();
  show("");
  try {
    const s = await api("POST", "/api/v1/session", { user: $("login-user").value, password: $("login-password").value });
    $("login-password").value = "";
    loggedIn(s);
  } catch (e) { $("login-password").value = ""; show(e.message); }
}

async function logout() {
  try { await api("DELETE", "/api/v1/session"); } catch (_) { /* logged out either way */ }
  loggedOut();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("refresh").addEventListener("click", load);
  $("filter-name").addEventListener("input", render);
  $("filter-tag").addEventListener("change", load);
  $("new-secret").addEventListener("click", () => edit(null));
  $("show-audit").addEventListener("click", audit);
  $("editor-form").addEventListener("submit", save);
  $("edit-cancel").addEventListener("click", () => { $("edit-value").value = ""; $("editor").hidden = true; });
  $("versions-close").addEventListener("click", () => { $("versions").hidden = true; });
  $("audit-close").addEventListener("click", () => { $("audit").hidden = true; });
  $("show-keys").addEventListener("click", keys);
  $("keys-close").addEventListener("click", () => { $("keys").hidden = true; });
  $("show-verify").addEventListener("click", verify);
  $("verify-close").addEventListener("click", () => { $("verify").hidden = true; });
  $("grant-form").addEventListener("submit", addGrant);
  $("grants-close").addEventListener("click", () => { $("grants").hidden = true; });
  try { loggedIn(await api("GET", "/api/v1/session")); } catch (_) { loggedOut(); }
});
