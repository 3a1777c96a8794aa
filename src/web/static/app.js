// HomeSec status page: refreshes camera pictures, applies filters on change.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll("img[data-refresh]")) {
    const base = img.getAttribute("src").split("?")[0];
    const every = Math.max(1, Number(img.dataset.refresh)) * 1000;
    let busy = false;
    img.addEventListener("load", () => { busy = false; img.classList.remove("stale"); });
    img.addEventListener("error", () => { busy = false; img.classList.add("stale"); });
    setInterval(() => {
      if (busy || document.hidden) return;
      busy = true;
      img.src = base + "?t=" + Date.now();
    }, every);
  }
  const filters = document.getElementById("filters");
  if (filters) {
    for (const select of filters.querySelectorAll("select")) {
      select.addEventListener("change", () => filters.submit());
    }
  }
});
