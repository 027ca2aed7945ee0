// The room page's dialogs: the confirmation that Leave and Remove ask for, and the
// image viewer. Without this file their links open a confirmation page and the image
// (in a new tab) instead. Native <dialog>s: Esc closes them; focus goes back.
(function () {
  "use strict";

  // --- Leave and Remove ask first: the link (a confirmation page without this script)
  // opens the page's confirm dialog, filled from its data-confirm-*. An explanation
  // without data-confirm-action (the last owner leaving) offers only Close. ----------
  var confirmDialog = document.getElementById("confirm");
  var confirmOpener = null;
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-confirm]");
    if (!link || !confirmDialog || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    var action = link.dataset.confirmAction || "";
    confirmDialog.querySelector("[data-confirm-title]").textContent = link.dataset.confirmTitle || "";
    confirmDialog.querySelector("[data-confirm-text]").textContent = link.dataset.confirmText || "";
    var form = confirmDialog.querySelector("form");
    var button = confirmDialog.querySelector("[data-confirm-button]");
    var cancel = confirmDialog.querySelector("[data-confirm-cancel]");
    form.setAttribute("action", action);
    button.hidden = !action;
    button.textContent = link.dataset.confirmButton || "";
    cancel.textContent = action ? "Cancel" : "Close";
    confirmOpener = link;
    confirmDialog.showModal();
    // The safe choice first: Enter right away does not remove anyone.
    cancel.focus();
  });
  if (confirmDialog) {
    confirmDialog.querySelector("[data-confirm-cancel]").addEventListener("click", function () {
      confirmDialog.close();
    });
    confirmDialog.addEventListener("close", function () {
      var lost = !document.activeElement || document.activeElement === document.body;
      if (lost && confirmOpener && document.body.contains(confirmOpener)) confirmOpener.focus();
      confirmOpener = null;
    });
  }

  // --- Images open in a viewer (a <dialog>: Esc closes it and focus goes back to the
  // thumbnail); without this script their link opens the image in a new tab. ---------
  var viewer = document.getElementById("image-viewer");
  var viewerOpener = null;
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-image-viewer]");
    if (!link || !viewer || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    var thumbnail = link.querySelector("img");
    var name = thumbnail ? thumbnail.getAttribute("alt") : "";
    var image = viewer.querySelector("[data-viewer-image]");
    image.src = link.href;
    image.alt = name;
    viewer.querySelector("[data-viewer-title]").textContent = name || "Image";
    viewer.querySelector("[data-viewer-name]").textContent = " " + name;
    var download = viewer.querySelector("[data-viewer-download]");
    download.href = link.href;
    download.setAttribute("download", link.dataset.downloadName || "");
    viewerOpener = link;
    viewer.showModal();
    viewer.querySelector("[data-viewer-close]").focus();
  });
  if (viewer) {
    viewer.querySelector("[data-viewer-close]").addEventListener("click", function () {
      viewer.close();
    });
    // A click on the backdrop (the dialog itself, outside its content) closes it too.
    viewer.addEventListener("click", function (event) {
      if (event.target === viewer) viewer.close();
    });
    viewer.addEventListener("close", function () {
      viewer.querySelector("[data-viewer-image]").removeAttribute("src");
      var lost = !document.activeElement || document.activeElement === document.body;
      if (lost && viewerOpener && document.body.contains(viewerOpener)) viewerOpener.focus();
      viewerOpener = null;
    });
  }
})();
