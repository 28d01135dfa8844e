// Diffusion Studio's page script (launch(js=...)): what Gradio's components don't do on their own.
() => {
  const TITLE = document.title || "Diffusion Studio";
  const visible = (el) => el && el.offsetParent !== null;

  // A phone folds the model bar on page open, so the prompt and Generate are on its first screen; one tap on
  // "Model, VAE and scheduler" opens it again.
  let tries = 0;
  const fold = setInterval(() => {
    const label = document.querySelector("#model-bar > .label-wrap, #model-bar button.label-wrap");
    if (label || ++tries > 100) clearInterval(fold);
    if (label && window.matchMedia("(max-width: 768px)").matches && label.classList.contains("open")) label.click();
  }, 100);

  // Gradio's overflow menu (the tabs that don't fit the width) shows a disabled tab like any other, and opens it;
  // the app lists the disabled ones in #unserved-tabs, so hide those entries as the bar's own are hidden.
  const hideUnserved = () => {
    const names = (document.querySelector("#unserved-tabs")?.textContent || "").split("|").map((s) => s.trim());
    for (const entry of document.querySelectorAll(".overflow-dropdown button")) {
      const hide = names.includes(entry.textContent.trim());
      if ((entry.style.display === "none") !== hide) entry.style.display = hide ? "none" : "";
    }
  };
  new MutationObserver(hideUnserved).observe(document.body, { childList: true, subtree: true, characterData: true });

  // Ctrl+Enter (Cmd+Enter on a Mac) runs the open tab, from anywhere on the page.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    const button = [...document.querySelectorAll('#tasks button[id$="-generate"]')].find(visible);
    if (!button) return;
    event.preventDefault();
    button.click();
  }, true);

  // A number typed outside a slider's range is set to the nearest end by Gradio, silently (width 7 ran at 64,
  // steps 0 at 1), while one inside the range but off its rule gets the server's message. Say it here too.
  const outOfRange = (input) => {
    if (!(input instanceof HTMLInputElement) || input.type !== "number") return;
    const value = parseFloat(input.value), min = parseFloat(input.min), max = parseFloat(input.max);
    if (Number.isNaN(value)) return;
    const bound = !Number.isNaN(min) && value < min ? min : !Number.isNaN(max) && value > max ? max : null;
    if (bound === null) return;
    const block = input.closest(".block");
    if (!block) return;
    const label = (input.getAttribute("aria-label") || "").replace(/^number input for /, "") || "This value";
    block.querySelector(".range-note")?.remove();
    const note = document.createElement("div");
    note.className = "range-note";
    note.setAttribute("role", "status");
    note.textContent = `${label} takes ${min} to ${max}: ${value} was set to ${bound}.`;
    block.appendChild(note);
    setTimeout(() => note.remove(), 8000);
  };
  document.addEventListener("focusout", (event) => outOfRange(event.target), true);
  document.addEventListener("keydown", (event) => { if (event.key === "Enter") outOfRange(event.target); }, true);

  // The run's progress in the browser tab's title, for a user in another tab.
  setInterval(() => {
    const bar = [...document.querySelectorAll(".progress-level-inner")].find((el) => visible(el) && el.textContent.trim());
    const text = bar ? bar.textContent.trim().replace(/\s+/g, " ") : "";
    const title = text ? `(${text}) ${TITLE}` : TITLE;
    if (document.title !== title) document.title = title;
  }, 500);
}
