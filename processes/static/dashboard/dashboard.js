// edgeproxy dashboard: live snapshots and live fragments, no framework.
//
// <div data-refresh="URL" data-every="MS">  is re-rendered from URL (an HTML fragment) every MS;
//   elements inside it marked data-keep (with an id) survive the swap, so snapshots do not flicker.
// <div data-changes="URL" data-since="TOKEN"> (the fleet page) asks URL&since=TOKEN every data-every ms and
//   gets only what changed: 204 when nothing did, else {since, fragments: {id: html}, cards: {name: html}}.
// <img data-snapshot="URL">                 shows the camera's newest JPEG, fetched about every second
//   while it is on screen (an IntersectionObserver: a card off screen fetches nothing); when there
//   is no frame, the server's reason is shown over it.
// <time data-ago datetime="ISO">            shows how long ago that was.
// <form data-confirm="question">            asks before it is sent.
(function () {
  "use strict";

  var SNAPSHOT_MS = 1000;
  var live = null;

  function setLive(ok) {
    if (live) live.classList.toggle("live--lost", !ok);
  }

  function onScreen(el) {
    var r = el.getBoundingClientRect();
    return r.bottom > 0 && r.right > 0 && r.top < window.innerHeight && r.left < window.innerWidth;
  }

  function fresh(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    return tpl.content;
  }

  function keep(content, region) {
    content.querySelectorAll("[data-keep][id]").forEach(function (fresh) {
      var kept = document.getElementById(fresh.id);
      if (kept && region.contains(kept)) fresh.replaceWith(kept);
    });
    return content;
  }

  function swap(region, html) {
    region.replaceChildren(keep(fresh(html), region));
    watchNew(region);
  }

  function replaceCard(name, html) {
    var card = document.querySelector(".card[data-camera=\"" + CSS.escape(name) + "\"]");
    if (!card) return;
    var content = keep(fresh(html), card);
    var parent = card.parentNode;
    card.replaceWith(content);
    watchNew(parent);
  }

  // Every data-every ms (not while the page is hidden, never two at once): GET url(), and hand a
  // response that was not a redirect (logged out, or the camera gone: the page says so) to use().
  function poll(region, url, use) {
    var every = parseInt(region.dataset.every, 10) || 2000;
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url(), { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.redirected) {
            window.location.reload();
            return null;
          }
          setLive(response.ok);
          return use(response);
        })
        .catch(function () { setLive(false); })
        .finally(function () { busy = false; });
    }, every);
  }

  function watchChanges(region) {
    poll(region, function () {
      return region.dataset.changes + "&since=" + encodeURIComponent(region.dataset.since);
    }, function (response) {
      if (response.status !== 200) return null;
      return response.json().then(function (changes) {
        Object.keys(changes.fragments).forEach(function (id) {
          var fragment = document.getElementById(id);
          if (fragment) swap(fragment, changes.fragments[id]);
        });
        Object.keys(changes.cards).forEach(function (name) { replaceCard(name, changes.cards[name]); });
        region.dataset.since = changes.since;
        showAges(region);
      });
    });
  }

  function showAges(root) {
    var now = Date.now();
    (root || document).querySelectorAll("time[data-ago]").forEach(function (el) {
      var seconds = Math.max(0, (now - Date.parse(el.getAttribute("datetime"))) / 1000);
      el.title = el.getAttribute("datetime");
      el.textContent = seconds < 60 ? Math.round(seconds) + " s ago"
        : seconds < 3600 ? Math.floor(seconds / 60) + " min ago"
        : seconds < 86400 ? Math.floor(seconds / 3600) + " h ago" : el.getAttribute("datetime").slice(0, 16).replace("T", " ");
    });
  }

  function watch(region) {
    poll(region, function () { return region.dataset.refresh; }, function (response) {
      if (!response.ok) return null;
      return response.text().then(function (html) { swap(region, html); });
    });
  }

  function showSnapshot(img, blob) {
    var box = img.closest(".snap");
    var url = URL.createObjectURL(blob);
    var previous = img.dataset.objectUrl;
    img.onload = function () {
      if (previous) URL.revokeObjectURL(previous);
      if (box) { box.classList.add("snap--live"); box.classList.remove("snap--none"); }
    };
    img.dataset.objectUrl = url;
    img.src = url;
  }

  function noSnapshot(img, reason) {
    var box = img.closest(".snap");
    if (!box) return;
    box.classList.remove("snap--live");
    box.classList.add("snap--none");
    var msg = box.querySelector(".snap-msg");
    if (msg) msg.textContent = reason || "No frame";
  }

  // The snapshots on screen: kept by an IntersectionObserver, so that a page of many cards neither
  // fetches nor measures the ones out of view.
  var visible = new Set();
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    var appeared = false;
    entries.forEach(function (entry) {
      if (entry.isIntersecting) { visible.add(entry.target); appeared = true; } else visible.delete(entry.target);
    });
    if (appeared) refreshSnapshots();
  }) : null;

  function watchNew(root) {
    if (!observer) return;
    visible.forEach(function (img) { if (!img.isConnected) { visible.delete(img); observer.unobserve(img); } });
    root.querySelectorAll("img[data-snapshot]").forEach(function (img) { observer.observe(img); });
  }

  function refreshSnapshots() {
    if (document.hidden) return;
    var shown = observer ? Array.from(visible) : Array.from(document.querySelectorAll("img[data-snapshot]"));
    shown.forEach(function (img) {
      if (img.dataset.loading === "1" || !img.isConnected || (!observer && !onScreen(img))) return;
      img.dataset.loading = "1";
      fetch(img.dataset.snapshot, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          var type = response.headers.get("Content-Type") || "";
          if (response.ok && type.indexOf("image/") === 0) {
            return response.blob().then(function (blob) { showSnapshot(img, blob); });
          }
          if (response.redirected) return noSnapshot(img, "Logged out");
          return response.text().then(function (text) { noSnapshot(img, text.slice(0, 200)); });
        })
        .catch(function () { noSnapshot(img, "The server does not answer"); })
        .finally(function () { img.dataset.loading = "0"; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    live = document.getElementById("live");
    document.querySelectorAll("[data-refresh]").forEach(watch);
    document.querySelectorAll("[data-changes]").forEach(watchChanges);
    showAges(document);
    setInterval(function () { showAges(document); }, 1000);
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
    watchNew(document);
    if (!observer) refreshSnapshots();
    setInterval(refreshSnapshots, SNAPSHOT_MS);
  });
})();
