// biasamp annotation page: one image at a time, answers saved as they are given.
"use strict";
(function () {
  const STORE = "biasamp.annotator";
  const $ = (id) => document.getElementById(id);
  let labels = [];
  let annotator = null;
  let current = null;   // key of the image shown
  let busy = false;     // a request or an image load is in flight

  function status(msg) { $("status").textContent = msg || ""; }

  async function call(method, url, body) {
    const opts = { method, headers: {}, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) throw new Error((data && data.error) || ("HTTP " + res.status));
    return data;
  }

  function show(section) {
    for (const id of ["start", "work", "finished"]) $(id).hidden = id !== section;
  }

  function setBusy(b) {
    busy = b;
    for (const btn of $("buttons").querySelectorAll("button")) btn.disabled = b || current === null;
  }

  function labelText(value) {
    const l = labels.find((x) => x.value === value);
    return l ? l.text : value;
  }

  function render(st) {
    $("progress").textContent = st.done + " / " + st.total;
    $("progress-bar").max = Math.max(1, st.total);
    $("progress-bar").value = st.done;
    $("progress-box").hidden = false;
    $("undo").disabled = !st.can_undo;
    $("undo-finished").disabled = !st.can_undo;
    $("last").textContent = st.last ? "last answer: " + labelText(st.last) : "";
    if (st.undone) status("Took back: " + labelText(st.undone.label)); else status("");
    if (!st.next) {
      current = null;
      $("image").removeAttribute("src");
      $("image").removeAttribute("data-key");
      show("finished");
      setBusy(false);
      return;
    }
    show("work");
    if (current === st.next.key && $("image").classList.contains("loaded")) { setBusy(false); return; }
    current = st.next.key;
    const img = $("image");
    img.classList.remove("loaded");
    img.classList.add("loading");
    img.dataset.key = String(st.next.key);
    setBusy(true);
    img.onload = () => { img.classList.remove("loading"); img.classList.add("loaded"); setBusy(false); };
    img.onerror = () => {
      img.classList.remove("loading"); img.classList.add("loaded");
      status("This image could not be loaded; answer 'unsure' or reload the page.");
      setBusy(false);
    };
    img.src = st.next.image;
    if (st.prefetch) { const pre = new Image(); pre.src = st.prefetch; }
  }

  async function answer(value) {
    if (busy || current === null || !annotator) return;
    setBusy(true);
    try {
      render(await call("POST", "/api/answer", { annotator, key: current, label: value }));
    } catch (e) {
      status("Not saved: " + e.message);
      setBusy(false);
    }
  }

  async function undo() {
    if (busy || !annotator) return;
    setBusy(true);
    try {
      render(await call("POST", "/api/undo", { annotator }));
    } catch (e) {
      status("Undo failed: " + e.message);
      setBusy(false);
    }
  }

  async function begin(name) {
    name = (name || "").trim();
    if (!name) return;
    try {
      const st = await call("GET", "/api/state?annotator=" + encodeURIComponent(name));
      annotator = st.annotator;
      try { localStorage.setItem(STORE, annotator); } catch (e) { /* storage off: ask again next time */ }
      $("annotator-name").textContent = annotator;
      $("who").hidden = false;
      current = null;
      render(st);
    } catch (e) {
      status(e.message);
      show("start");
    }
  }

  async function askName() {
    annotator = null;
    current = null;
    try { localStorage.removeItem(STORE); } catch (e) { /* ignore */ }
    $("who").hidden = true;
    $("progress-box").hidden = true;
    try {
      const info = await call("GET", "/api/task");
      const known = $("known");
      known.textContent = "";
      for (const [name, done] of Object.entries(info.annotators)) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = name + " (" + done + "/" + info.total + ")";
        b.addEventListener("click", () => begin(name));
        known.appendChild(b);
      }
      $("known-box").hidden = Object.keys(info.annotators).length === 0;
    } catch (e) { status(e.message); }
    show("start");
    $("name").focus();
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) return;
    if (!annotator) return;
    const k = ev.key.toLowerCase();
    if (k === "z" || ev.key === "Backspace") { ev.preventDefault(); undo(); return; }
    const i = labels.findIndex((l) => l.key === k);
    const digit = /^[1-9]$/.test(k) ? Number(k) - 1 : -1;
    const hit = i >= 0 ? i : (digit >= 0 && digit < labels.length ? digit : -1);
    if (hit >= 0) { ev.preventDefault(); answer(labels[hit].value); }
  }

  async function init() {
    let info;
    try { info = await call("GET", "/api/task"); } catch (e) { status("Cannot reach the server: " + e.message); return; }
    labels = info.labels;
    if (info.title) { $("title").textContent = info.title; document.title = info.title + " · annotate"; }
    const box = $("buttons");
    labels.forEach((l, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.label = l.value;
      b.disabled = true;
      b.append(l.text + " ");
      const kbd = document.createElement("kbd");
      kbd.textContent = l.key || String(i + 1);
      b.append(kbd);
      b.addEventListener("click", () => answer(l.value));
      box.appendChild(b);
    });
    $("start-form").addEventListener("submit", (ev) => { ev.preventDefault(); begin($("name").value); });
    $("switch").addEventListener("click", askName);
    $("undo").addEventListener("click", undo);
    $("undo-finished").addEventListener("click", undo);
    document.addEventListener("keydown", onKey);
    let saved = null;
    try { saved = localStorage.getItem(STORE); } catch (e) { saved = null; }
    if (saved) begin(saved); else askName();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
