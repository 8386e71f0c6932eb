// edgeproxy dashboard: live snapshots and live fragments, no framework.
//
// <div data-refresh="URL" data-every="MS">  is re-rendered from URL (an HTML fragment) every MS;
//   elements inside it marked data-keep (with an id) survive the swap, so snapshots do not flicker.
// <img data-snapshot="URL">                 shows the camera's newest JPEG, fetched about every second
//   while it is on screen; when there is no frame, the server's reason is shown over it.
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

  function swap(region, html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    tpl.content.querySelectorAll("[data-keep][id]").forEach(function (fresh) {
      var kept = document.getElementById(fresh.id);
      if (kept && region.contains(kept)) fresh.replaceWith(kept);
    });
    region.replaceChildren(tpl.content);
  }

  function watch(region) {
    var every = parseInt(region.dataset.every, 10) || 2000;
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(region.dataset.refresh, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.redirected) {  // logged out, or the camera is gone: let the page say so
            window.location.reload();
            return null;
          }
          setLive(response.ok);
          return response.ok ? response.text() : null;
        })
        .then(function (html) { if (html !== null && html !== undefined) swap(region, html); })
        .catch(function () { setLive(false); })
        .finally(function () { busy = false; });
    }, every);
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

  function refreshSnapshots() {
    if (document.hidden) return;
    document.querySelectorAll("img[data-snapshot]").forEach(function (img) {
      if (img.dataset.loading === "1" || !onScreen(img)) return;
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
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
    refreshSnapshots();
    setInterval(refreshSnapshots, SNAPSHOT_MS);
  });
})();
