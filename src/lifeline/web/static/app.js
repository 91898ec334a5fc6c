// Lifeline's pages work without this file; it adds the live parts: the event stream, toasts,
// ticking ages, Pick Up without a page load, sound and desktop alerts. Hand-written, no build.
(function () {
  "use strict";

  const body = document.body;
  document.documentElement.classList.add("js");
  const page = body.dataset.page;
  const me = body.dataset.userId || null;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  // ---- ages that tick --------------------------------------------------------------------
  function formatAge(total) {
    total = Math.max(0, Math.floor(total));
    if (total < 60) return total + "s";
    let minutes = Math.floor(total / 60);
    const secs = total % 60;
    if (minutes < 60) return minutes >= 10 || secs === 0 ? minutes + "m" : minutes + "m " + secs + "s";
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 24) return minutes ? hours + "h " + minutes + "m" : hours + "h";
    const days = Math.floor(hours / 24);
    hours %= 24;
    return hours ? days + "d " + hours + "h" : days + "d";
  }
  // Server and browser clocks differ; ages count from the server's clock.
  const serverNow = Date.parse(body.dataset.serverNow || "");
  const skew = isNaN(serverNow) ? 0 : Date.now() - serverNow;
  function formatAgo(seconds) {
    return seconds < 10 ? "just now" : formatAge(seconds) + " ago";
  }
  // A past time: relative ("3h ago"), a date once older than a week; the exact time in the
  // reader's own time zone is the tooltip.
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function formatRelative(then, now) {
    const seconds = Math.max(0, (now - then) / 1000);
    if (seconds < 60) return formatAgo(seconds);
    if (seconds < 3600) return Math.floor(seconds / 60) + "m ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h ago";
    if (seconds < 7 * 86400) return Math.floor(seconds / 86400) + "d ago";
    const date = new Date(then);
    const year = date.getFullYear() === new Date(now).getFullYear() ? "" : ", " + date.getFullYear();
    return MONTHS[date.getMonth()] + " " + date.getDate() + year;
  }
  const absolute = window.Intl
    ? new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
    })
    : null;
  function tick() {
    const now = Date.now() - skew;
    document.querySelectorAll("time[data-since]").forEach(function (el) {
      const since = Date.parse(el.dataset.since);
      if (isNaN(since)) return;
      const seconds = (now - since) / 1000;
      el.textContent = "ago" in el.dataset ? formatAgo(seconds) : formatAge(seconds);
      if ("ago" in el.dataset && absolute) el.title = absolute.format(new Date(since));
    });
    document.querySelectorAll("time[data-when]").forEach(function (el) {
      const then = Date.parse(el.getAttribute("datetime"));
      if (isNaN(then)) return;
      el.textContent = formatRelative(then, now);
      if (absolute) el.title = absolute.format(new Date(then));
    });
  }
  tick();
  setInterval(tick, 1000);

  // ---- toasts ------------------------------------------------------------------------------
  const toasts = document.getElementById("toasts");
  function toast(text, href, linkText, handoffId) {
    if (!toasts) return;
    const el = document.createElement("div");
    el.className = "toast";
    if (handoffId) el.dataset.handoffId = handoffId;
    el.setAttribute("role", "status");
    const content = document.createElement("div");
    content.className = "toast-body";
    content.textContent = text + " ";
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = linkText || "Open";
      content.appendChild(a);
    }
    const close = document.createElement("button");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", function () { el.remove(); });
    el.append(content, close);
    toasts.prepend(el);
    setTimeout(function () { el.remove(); }, 8000);
    while (toasts.children.length > 4) toasts.lastChild.remove();
  }
  // A toast about an escalation that someone has since picked up must not still say "Open".
  function retireToasts(handoffId, text) {
    if (!toasts || !handoffId) return;
    toasts.querySelectorAll('.toast[data-handoff-id="' + handoffId + '"] .toast-body').forEach(function (b) {
      b.textContent = text;
    });
  }

  // ---- the navigation on phones: one Menu button -----------------------------------------
  const menuButton = document.getElementById("menu-toggle");
  if (menuButton) {
    menuButton.addEventListener("click", function () {
      const bar = menuButton.closest(".topbar");
      const open = !bar.classList.contains("open");
      bar.classList.toggle("open", open);
      menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // ---- confirmations (no inline handlers under the CSP) --------------------------------------
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  // ---- sound and desktop alerts ---------------------------------------------------------------
  let audio = null;
  const soundButton = document.getElementById("sound-toggle");
  const soundOn = function () { return localStorage.getItem("lifeline.sound") === "on"; };
  function chime() {
    if (!soundOn() || !window.AudioContext) return;
    audio = audio || new AudioContext();
    const t = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.setValueAtTime(880, t);
    osc.frequency.setValueAtTime(1320, t + 0.14);
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.5);
    osc.connect(gain).connect(audio.destination);
    osc.start(t);
    osc.stop(t + 0.55);
  }
  if (soundButton && window.AudioContext) {
    const show = function () {
      soundButton.setAttribute("aria-pressed", soundOn() ? "true" : "false");
      soundButton.textContent = soundOn() ? "Sound: on · turn off" : "Sound: off · turn on";
    };
    soundButton.hidden = false;
    show();
    soundButton.addEventListener("click", function () {
      localStorage.setItem("lifeline.sound", soundOn() ? "off" : "on");
      show();
      chime(); // the click unlocks audio, and lets you hear what you chose
    });
  }
  const notifyButton = document.getElementById("notify-toggle");
  if (notifyButton && "Notification" in window && Notification.permission === "default") {
    notifyButton.hidden = false;
    notifyButton.addEventListener("click", function () {
      Notification.requestPermission().then(function () { notifyButton.hidden = true; });
    });
  }
  function desktopAlert(title, text, href, tag) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && document.hasFocus()) return;
    const n = new Notification(title, { body: text, tag: tag });
    n.onclick = function () { window.focus(); location.assign(href); };
  }

  // ---- fetch a fresh copy of this page ------------------------------------------------------------
  async function freshDocument() {
    const response = await fetch(location.pathname + location.search, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (response.redirected && new URL(response.url).pathname === "/login") {
      location.assign(response.url);
      return null;
    }
    if (!response.ok) return null;
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }
  // Many events can arrive at once: refresh one at a time, and once more if any came meanwhile.
  function serialised(work) {
    let running = false, again = false;
    return async function run() {
      if (running) { again = true; return; }
      running = true;
      try {
        do { again = false; await work(); } while (again);
      } catch (err) {
        console.warn("refresh failed", err);
      } finally {
        running = false;
      }
    };
  }

  // ---- the team queue ---------------------------------------------------------------------------
  const claims = new Map(); // handoff id -> claimer id, from handoff.claimed events
  const farewells = { "handoff.resolved": "Resolved", "handoff.cancelled": "Withdrawn by the escalator",
    "handoff.expired": "Expired: nobody picked it up in time" };
  const endings = new Map();

  function leave(card, text) {
    if (card.classList.contains("leaving")) return;
    card.classList.remove("arriving");
    card.classList.add("leaving");
    card.querySelectorAll("form").forEach(function (f) { f.remove(); });
    const outcome = card.querySelector(".outcome");
    if (outcome && text) { outcome.textContent = text; outcome.hidden = false; }
    if (text) retireToasts(card.dataset.handoffId, "“" + card.dataset.title + "”: " + text.charAt(0).toLowerCase() + text.slice(1));
    setTimeout(function () {
      card.classList.add("gone");
      setTimeout(function () { card.remove(); updateQueueCounts(); }, 500);
    }, 4000);
  }
  function updateQueueCounts() {
    const list = document.getElementById("open-queue");
    if (!list) return;
    const live = list.querySelectorAll(".queue-item:not(.leaving)").length;
    const count = document.getElementById("open-count");
    if (count) count.textContent = String(live);
    const empty = document.getElementById("queue-empty");
    if (empty) empty.hidden = live > 0;
  }
  const refreshQueue = serialised(async function () {
    const doc = await freshDocument();
    if (!doc) return;
    const list = document.getElementById("open-queue");
    const fresh = doc.getElementById("open-queue");
    if (!list || !fresh) return;
    const have = new Map();
    list.querySelectorAll(".queue-item").forEach(function (li) { have.set(li.dataset.handoffId, li); });
    const wanted = Array.from(fresh.querySelectorAll(".queue-item"));
    const wantedIds = new Set(wanted.map(function (li) { return li.dataset.handoffId; }));
    have.forEach(function (card, id) {
      if (wantedIds.has(id)) return;
      let text = endings.get(id) || "No longer waiting";
      if (claims.has(id)) {
        const row = doc.querySelector('#claimed [data-handoff-id="' + id + '"]');
        const who = claims.get(id) === me ? "you" : (row && row.dataset.claimer) || "a teammate";
        text = "Picked up by " + who;
      }
      leave(card, text);
    });
    let previous = null;
    wanted.forEach(function (li) {
      const existing = have.get(li.dataset.handoffId);
      if (existing && !existing.classList.contains("leaving")) { previous = existing; return; }
      if (existing) return;
      const card = document.importNode(li, true);
      card.classList.add("arriving");
      if (previous) previous.after(card); else list.prepend(card);
      previous = card;
      announce(card);
    });
    const claimedNow = document.getElementById("claimed");
    const claimedFresh = doc.getElementById("claimed");
    if (claimedNow && claimedFresh) claimedNow.replaceWith(document.importNode(claimedFresh, true));
    updateQueueCounts();
    tick();
  });
  function announce(card) {
    const title = card.dataset.title;
    const who = card.dataset.escalator;
    const href = "/sessions/" + card.dataset.sessionId;
    toast("New escalation from " + who + ": “" + title + "”", href, "Open", card.dataset.handoffId);
    chime();
    desktopAlert("New escalation from " + who, title, href, card.dataset.handoffId);
  }

  // ---- one session ---------------------------------------------------------------------------------
  const sessionId = body.dataset.sessionId;
  let deliveryPolls = 0;
  const refreshSession = serialised(async function () {
    const doc = await freshDocument();
    if (!doc) return;
    const seen = new Set();
    document.querySelectorAll("#transcript [data-message-id]").forEach(function (m) { seen.add(m.dataset.messageId); });
    document.querySelectorAll("[data-live-part]").forEach(function (part) {
      const fresh = doc.querySelector('[data-live-part="' + part.dataset.livePart + '"]');
      if (!fresh) return;
      // Keep what someone is typing: textareas survive the swap.
      const typed = {};
      part.querySelectorAll("textarea[id]").forEach(function (t) { typed[t.id] = t.value; });
      const focused = document.activeElement && part.contains(document.activeElement) ? document.activeElement.id : null;
      const copy = document.importNode(fresh, true);
      part.replaceWith(copy);
      Object.keys(typed).forEach(function (id) {
        const t = document.getElementById(id);
        if (t) t.value = typed[id];
      });
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    });
    document.querySelectorAll("#transcript [data-message-id]").forEach(function (m) {
      if (!seen.has(m.dataset.messageId)) m.classList.add("new");
    });
    tick();
    pollDeliveries();
  });
  // Delivery outcomes land moments after the escalation: look again while some are pending.
  function pollDeliveries() {
    const pending = document.querySelector('#deliveries[data-pending="true"]');
    if (!pending || deliveryPolls >= 30) return;
    deliveryPolls += 1;
    setTimeout(refreshSession, 2000);
  }

  function onSessionEvent(event) {
    const data = event.data || {};
    if (event.type === "session.message" && data.session_id === sessionId) {
      refreshSession();
    } else if (event.type.indexOf("handoff.") === 0 && data.session_id === sessionId) {
      deliveryPolls = 0;
      // "Escalated. Your team has been told." is history once the state moves on.
      if (event.type !== "handoff.escalated") {
        document.querySelectorAll("main > .flash.notice").forEach(function (f) { f.remove(); });
      }
      refreshSession().then(function () {
        if (data.created_by !== me) return;
        if (event.type === "handoff.claimed" && data.claimed_by !== me) {
          const banner = document.getElementById("picked-up-by");
          toast(banner ? banner.textContent.trim() : "Your escalation was picked up.");
        } else if (event.type === "handoff.resolved" && data.resolved_by !== me) {
          const banner = document.getElementById("resolved-by");
          toast(banner ? banner.textContent.trim() : "Your escalation was resolved.");
        }
      });
    } else {
      elsewhere(event);
    }
  }
  // Events about other sessions, on pages that don't list them.
  function elsewhere(event) {
    const data = event.data || {};
    if (event.type === "handoff.escalated" && data.created_by !== me) {
      toast("New escalation: “" + (data.note || "no note") + "”", "/sessions/" + data.session_id, "Open", data.id);
      chime();
    } else if (event.type === "handoff.claimed") {
      retireToasts(data.id, data.claimed_by === me ? "You picked it up." : "Already picked up by a teammate.");
    } else if (event.type === "handoff.resolved" && data.created_by === me && data.resolved_by !== me) {
      toast("Your escalation was resolved.", "/sessions/" + data.session_id, "Open");
    }
  }

  // ---- the event stream ------------------------------------------------------------------------------
  const TYPES = ["handoff.escalated", "handoff.claimed", "handoff.released", "handoff.resolved",
    "handoff.cancelled", "handoff.expired", "handoff.parked", "session.message"];
  const status = document.querySelector("[data-live-status]");
  function setLive(on, text) {
    if (!status) return;
    status.hidden = false;
    status.classList.toggle("on", on);
    status.textContent = text;
    status.title = on ? "Updates arrive as they happen" : "Reconnecting to live updates";
  }
  function handle(event) {
    if (page === "queue") {
      if (event.type === "handoff.claimed") claims.set(event.data.id, event.data.claimed_by);
      if (farewells[event.type]) endings.set(event.data.id, farewells[event.type]);
      if (event.type.indexOf("handoff.") === 0 && event.type !== "handoff.parked") refreshQueue();
      if (event.type === "handoff.resolved" && event.data.created_by === me && event.data.resolved_by !== me) {
        toast("Your escalation was resolved.", "/sessions/" + event.data.session_id, "Open");
      }
    } else if (page === "session") {
      onSessionEvent(event);
    } else {
      elsewhere(event);
    }
  }
  let lastId = body.dataset.liveFrom || null;
  let retry = 1000;
  function connect() {
    const url = "/api/v1/events" + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "");
    const source = new EventSource(url, { withCredentials: true });
    let opened = false;
    const receive = function (message) {
      let event;
      try { event = JSON.parse(message.data); } catch (err) { return; }
      if (!event || !event.type) return;
      if (message.lastEventId) lastId = message.lastEventId;
      handle(event);
    };
    TYPES.forEach(function (type) { source.addEventListener(type, receive); });
    source.onmessage = receive;
    source.onopen = function () {
      opened = true;
      retry = 1000;
      setLive(true, "Live");
    };
    source.onerror = function () {
      setLive(false, "Reconnecting…");
      if (source.readyState !== EventSource.CLOSED) {
        if (!opened) retry = Math.min(retry * 2, 30000);
        return; // the browser reconnects by itself, with Last-Event-ID
      }
      // The browser gave up: the server said no. Signed out (here or in another tab)? Then
      // say so and stop; otherwise try again later, from where we were.
      fetch("/api/v1/me", { credentials: "same-origin" }).then(function (response) {
        if (response.status === 401) {
          setLive(false, "Signed out");
          return;
        }
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      }, function () {
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      });
    };
  }
  if (me && window.EventSource && page !== "login") connect();

  // ---- Pick Up without leaving the page -------------------------------------------------------------------
  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("pick-up") || event.defaultPrevented) return;
    event.preventDefault();
    const button = form.querySelector("button");
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "Picking up…";
    let response;
    try {
      response = await fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      });
    } catch (err) {
      form.submit(); // network trouble: the plain form post still works
      return;
    }
    if (response.ok) { location.assign(form.dataset.sessionUrl); return; }
    if (response.status === 401) { location.assign("/login?next=" + encodeURIComponent(location.pathname)); return; }
    const detail = await response.json().catch(function () { return {}; });
    const card = form.closest(".queue-item");
    if (response.status === 409) {
      // Someone else was quicker: say who, calmly, and let the card go.
      const winner = detail.claimed_by && detail.claimed_by.name;
      const text = winner ? "Already picked up by " + winner + ". Nothing for you to do." : (detail.detail || "No longer open.");
      if (card) { leave(card, text); return; }
      toast(text);
      if (page === "session") refreshSession();
      return;
    }
    button.disabled = false;
    button.textContent = label;
    toast(typeof detail.detail === "string" ? detail.detail : "Couldn't pick it up (" + response.status + ").");
  });

  // ---- analytics: days in the browser's time zone --------------------------------------------------------------
  const tzInput = document.querySelector("[data-auto-tz]");
  if (tzInput && !new URLSearchParams(location.search).has("tz") && window.Intl) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && zone !== tzInput.value) {
      const params = new URLSearchParams(location.search);
      params.set("tz", zone);
      location.replace(location.pathname + "?" + params.toString());
    }
  }

  if (page === "session") pollDeliveries();

  // ---- /demo/mail: look for new mail now and then, never under the reader's eyes --------------------
  if (page === "demo-mail") {
    setInterval(function () {
      if (!document.querySelector("details[open]") && document.visibilityState === "visible") location.reload();
    }, 10000);
  }
})();
