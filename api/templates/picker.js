  // Filtering only; without script every provider is listed and still works.
  const search = document.getElementById("search");
  search.addEventListener("input", () => {
    const term = search.value.trim().toLowerCase();
    let shown = 0;
    for (const item of document.querySelectorAll("#providers li")) {
      const match = item.dataset.name.includes(term);
      item.hidden = !match;
      shown += match;
    }
    document.getElementById("none").hidden = shown > 0;
  });
