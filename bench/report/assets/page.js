"use strict";
// The comparison table: sort by any column (numbers as numbers, gaps last), filter by the selects, open a row's details.
(function () {
  const table = document.getElementById("comparison");
  const entries = Array.from(table.querySelectorAll("tbody.entry"));
  const headers = Array.from(table.querySelectorAll("thead th"));
  const selects = Array.from(document.querySelectorAll("select[data-filter]"));
  const count = document.getElementById("shown-count");

  function cellText(entry, column) {
    const cell = entry.rows[0].cells[column];
    return cell ? cell.textContent.trim() : "";
  }

  // a figure's leading number ("98.1%" -> 98.1, "+0.46" -> 0.46, "1.10x" -> 1.1); null for text
  function leadingNumber(text) {
    const match = /^[+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?/i.exec(text);
    return match ? parseFloat(match[0]) : null;
  }

  function missing(text) {
    return text === "" || text === "–";
  }

  function compare(a, b) {
    const x = leadingNumber(a);
    const y = leadingNumber(b);
    if (x !== null && y !== null && x !== y) {
      return x - y;
    }
    return a.localeCompare(b, undefined, { numeric: true });
  }

  function sortBy(header) {
    const column = Number(header.dataset.column);
    const direction = header.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    headers.forEach((h) => h.setAttribute("aria-sort", "none"));
    header.setAttribute("aria-sort", direction);
    const sign = direction === "ascending" ? 1 : -1;
    const sorted = entries.slice().sort((p, q) => {
      const a = cellText(p, column);
      const b = cellText(q, column);
      const gaps = missing(a) - missing(b);  // gaps stay last either way
      return gaps || sign * compare(a, b) || Number(p.dataset.order) - Number(q.dataset.order);
    });
    sorted.forEach((entry) => table.appendChild(entry));
  }

  function applyFilters() {
    let shown = 0;
    entries.forEach((entry) => {
      const keep = selects.every((s) => s.value === "" || entry.dataset[s.dataset.filter] === s.value);
      entry.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    count.textContent = shown + " of " + entries.length + " rows";
  }

  function toggle(row) {
    const details = row.nextElementSibling;
    const open = row.getAttribute("aria-expanded") !== "true";
    row.setAttribute("aria-expanded", String(open));
    details.hidden = !open;
  }

  function onKey(handler) {
    return (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        handler(event.currentTarget);
      }
    };
  }

  headers.forEach((header) => {
    header.addEventListener("click", () => sortBy(header));
    header.addEventListener("keydown", onKey(sortBy));
  });
  table.querySelectorAll("tr.openable").forEach((row) => {
    row.addEventListener("click", () => toggle(row));
    row.addEventListener("keydown", onKey(toggle));
  });
  selects.forEach((select) => select.addEventListener("change", applyFilters));
  applyFilters();
})();
