// Keeps a page current without reloading it.
// A run's page follows the run's event stream (server-sent events): each event is added to
// the log, as text, and the page's changing part (status, nodes, errors, waits) is fetched
// anew, at most a few times a second. The runs page fetches its table every two seconds.
(function () {
  "use strict";
  const live = document.querySelector("[data-live]");
  if (!live) return;
  let queued = null;
  function refresh() {
    if (queued !== null) return;
    queued = setTimeout(async function () {
      queued = null;
      const answer = await fetch(live.dataset.live, { headers: { Accept: "text/html" } });
      if (answer.ok) live.innerHTML = await answer.text();
    }, 150);
  }
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function logged(event) {
    const log = document.querySelector("#log tbody");
    if (!log) return;
    const tokens = event.type === "token" ? event.node + "|" + (event.key || "") : null;
    const last = log.lastElementChild;
    if (tokens !== null && last && last.dataset.tokens === tokens) {
      last.lastElementChild.firstChild.textContent += event.text;  // the reply, as it grows
      return;
    }
    const row = document.createElement("tr");
    cell(row, String(event.seq));
    cell(row, (event.at || "").replace("T", " ").slice(0, 19));
    const named = event.type === "token" || event.type === "event";
    cell(row, named ? "event" : event.type);
    cell(row, (event.node || "") + (event.key ? "[" + event.key + "]" : ""));
    cell(row, event.status || event.name || (event.type === "token" ? "token" : ""));
    if (tokens !== null) {
      row.dataset.tokens = tokens;
      const td = document.createElement("td");
      const text = document.createElement("pre");
      text.className = "tokens";
      text.textContent = event.text;
      td.appendChild(text);
      row.appendChild(td);
    } else {
      const shown = event.payload === undefined ? event.output : event.payload;
      cell(row, shown === undefined || shown === null ? "" : JSON.stringify(shown));
    }
    log.appendChild(row);
  }
  if (live.dataset.events) {
    const source = new EventSource(live.dataset.events);
    source.onmessage = function (message) {
      logged(JSON.parse(message.data));
      refresh();
    };
    source.addEventListener("end", function () {
      source.close();
      refresh();
    });
  } else if (live.dataset.every) {
    setInterval(refresh, Number(live.dataset.every));
  }
})();
