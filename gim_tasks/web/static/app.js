// The only script of the pages (the Content-Security-Policy allows no inline script): a
// <select data-autosubmit> submits its form when changed. Every page works without it.
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
