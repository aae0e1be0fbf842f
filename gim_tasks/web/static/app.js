// The only script of the pages (the Content-Security-Policy allows no inline script). Every
// page works without it.

// A <select data-autosubmit> submits its form when changed (delegated: the live region below
// replaces its content).
document.addEventListener("change", (event) => {
  const select = event.target;
  if (select instanceof HTMLSelectElement && select.hasAttribute("data-autosubmit")) {
    select.form.submit();
  }
});

// Live pages (Running, ETL, Aggregation, Alerts): the data in #live is fetched again in place
// every data-seconds, instead of a <meta http-equiv="refresh"> that reloads the page under a
// screen reader (WCAG 2.2.1). Never while focus or a selection is inside it, never while the
// tab is hidden; "Pause updates" stops it (remembered across pages).
const toggle = document.getElementById("live-toggle");
const region = document.getElementById("live");
if (toggle && region) {
  const state = document.getElementById("live-state");
  const seconds = Number(toggle.dataset.seconds);
  let paused = localStorage.getItem("gim-live-paused") === "1";
  const show = (text) => {
    toggle.setAttribute("aria-pressed", String(paused));
    state.textContent = paused ? "Updates paused." : text;
  };
  show(`Updated every ${seconds} s.`);
  toggle.addEventListener("click", () => {
    paused = !paused;
    localStorage.setItem("gim-live-paused", paused ? "1" : "0");
    show(`Updated every ${seconds} s.`);
  });
  const busy = () =>
    region.contains(document.activeElement) ||
    (document.getSelection() && !document.getSelection().isCollapsed &&
      region.contains(document.getSelection().anchorNode));
  setInterval(async () => {
    if (paused || document.hidden || busy()) return;
    try {
      const reply = await fetch(location.href, { credentials: "same-origin" });
      if (!reply.ok || reply.redirected) return; // a lapsed session: leave the page as it is
      const page = new DOMParser().parseFromString(await reply.text(), "text/html");
      const fresh = page.getElementById("live");
      if (!fresh || paused || busy()) return;
      // Copy the nodes first: childNodes is live, and moving a node out of it shifts the rest.
      const nodes = Array.from(fresh.childNodes);
      region.replaceChildren(...nodes.map((node) => document.importNode(node, true)));
      region.dataset.updated = new Date().toISOString();
      show(`Updated every ${seconds} s; last at ${new Date().toLocaleTimeString()}.`);
    } catch {
      // the server is away: try again at the next interval
    }
  }, seconds * 1000);
}
