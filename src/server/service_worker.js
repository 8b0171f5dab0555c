// Hearth's service worker: keeps the page and the client's files so that a visitor
// on a dead connection still sees the page, their name and what they have not sent
// yet (the page reconnects by itself when the network returns). Served by
// src/server/webapp.rs, which fills in the list and the version.
const VERSION = "__VERSION__";
const SHELL = __SHELL__;
const CACHE = `hearth-${VERSION}`;
// A page that does not answer in this long is taken from the cache instead.
const PATIENCE_MS = 4000;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names.filter((name) => name.startsWith("hearth-") && name !== CACHE).map((name) => caches.delete(name)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // Only this site's own files; never the socket, server functions or metrics.
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/") || url.pathname === "/ws" || url.pathname === "/sw.js") return;
  // Every page is the one page: kept under "/".
  const key = request.mode === "navigate" ? "/" : request;
  event.respondWith(fresh(request, key).catch(() => kept(key)));
});

// The network's answer, kept for next time; it fails when the network does, or
// takes too long.
function fresh(request, key) {
  const answer = fetch(request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(key, copy));
    }
    return response;
  });
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error("too slow")), PATIENCE_MS));
  return Promise.race([answer, late]);
}

function kept(key) {
  return caches.match(key).then((response) => response || Response.error());
}
