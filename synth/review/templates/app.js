// The review page's script. The server's shell holds no data: this script trades the
// URL's token for a session secret, keeps the secret in sessionStorage (this origin
// only, port included; no cookie), and sends it in a header with every request.
"use strict";

const SESSION = "synth-review-session";
const app = document.getElementById("app");
let session = sessionStorage.getItem(SESSION);
let busy = false;

function say(text) {
  const box = document.createElement("div");
  box.className = "center card";
  box.id = "denied";
  box.textContent = text;
  app.replaceChildren(box);
}

// "/" -> "/view", "/item/ID?skip=..." -> "/view/item/ID?skip=...": the data behind a page.
function viewOf(path) {
  return "/view" + (path === "/" ? "" : path);
}

async function request(path, init = {}) {
  const headers = { ...(init.headers || {}), "X-Synth-Session": session };
  const reply = await fetch(path, { ...init, headers, credentials: "omit" });
  if (reply.status === 403) {
    sessionStorage.removeItem(SESSION);
    session = null;
  }
  return reply;
}

async function show(reply) {
  const text = await reply.text();
  if (!(reply.headers.get("content-type") || "").startsWith("text/html")) {
    say(text.trim());
    return;
  }
  app.innerHTML = text; // escaped by the server's templates
  const item = document.getElementById("item");
  if (item && item.dataset.open) openPanel(item.dataset.open);
}

async function load(where) {
  await show(await request(viewOf(where.pathname) + where.search));
}

async function start() {
  const here = new URL(location.href);
  const token = here.searchParams.get("token");
  if (token !== null) {
    // Out of the address bar and the history before anything else is fetched.
    here.searchParams.delete("token");
    history.replaceState(null, "", here.pathname + here.search + here.hash);
    const reply = await fetch("/session", {
      method: "POST",
      headers: { "X-Synth-Token": token },
      credentials: "omit",
    });
    if (!reply.ok) {
      say((await reply.text()).trim());
      return;
    }
    session = (await reply.json()).session;
    sessionStorage.setItem(SESSION, session);
  }
  if (!session) {
    say("This page needs the access token in the URL `synth review serve` printed.");
    return;
  }
  await load(here);
}

function openPanel(id) {
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("open", p.id === id);
  const focus = document.querySelector("#" + id + (id === "edit-panel" ? " textarea" : " input[name=note]"));
  if (focus) {
    focus.focus();
    if (id === "edit-panel") focus.setSelectionRange(focus.value.length, focus.value.length);
  }
}

function skip() {
  const item = document.getElementById("item");
  const ids = item.dataset.skip ? item.dataset.skip.split(",") : [];
  ids.push(item.dataset.id);
  const next = new URL("/?skip=" + encodeURIComponent(ids.join(",")), location.href);
  history.pushState(null, "", next.pathname + next.search);
  load(next);
}

document.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (busy) return;
  busy = true;
  try {
    const form = ev.target;
    const body = new URLSearchParams(new FormData(form, ev.submitter));
    const reply = await request(form.getAttribute("action"), { method: "POST", body });
    if (reply.ok) history.pushState(null, "", "/"); // a decision made: the next row
    await show(reply);
  } finally {
    busy = false;
  }
});

document.addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-panel], button[data-action]");
  if (!button) return;
  if (button.dataset.panel) openPanel(button.dataset.panel);
  else if (button.dataset.action === "skip") skip();
});

document.addEventListener("keydown", (ev) => {
  if (!document.getElementById("item")) return;
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (ev.key === "Escape") {
    for (const p of document.querySelectorAll(".panel")) p.classList.remove("open");
    document.activeElement.blur();
    return;
  }
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && document.activeElement.id === "edit-text") {
    ev.preventDefault();
    document.getElementById("edit-form").requestSubmit();
    return;
  }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const reasonButtons = document.querySelectorAll("#reject-form button[name=reason]");
  const rejecting = document.getElementById("reject-panel").classList.contains("open");
  if (rejecting && /^[1-9]$/.test(ev.key) && reasonButtons[+ev.key - 1]) {
    ev.preventDefault();
    reasonButtons[+ev.key - 1].click();
    return;
  }
  const k = ev.key.toLowerCase();
  if (k === "a") { ev.preventDefault(); document.getElementById("approve-form").requestSubmit(); }
  else if (k === "r") { ev.preventDefault(); openPanel("reject-panel"); document.activeElement.blur(); }
  else if (k === "e") { ev.preventDefault(); openPanel("edit-panel"); }
  else if (k === "s") { ev.preventDefault(); skip(); }
});

window.addEventListener("popstate", () => load(new URL(location.href)));

start();
