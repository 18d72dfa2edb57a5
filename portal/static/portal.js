// Kontor admin portal: progressive enhancement only; every page works
// without this file. A "select all" checkbox in a table header ticks every
// checkbox named by its data-select-all attribute in the same form.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var form = all.form;
    var name = all.getAttribute("data-select-all");
    if (!form) { return; }
    var boxes = Array.prototype.filter.call(form.elements, function (e) {
      return e.type === "checkbox" && e.name === name;
    });
    var label = all.closest("[data-select-all-label]");
    if (label) { label.hidden = false; }
    function sync() {
      var ticked = boxes.filter(function (b) { return b.checked; }).length;
      all.checked = ticked === boxes.length && ticked > 0;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
    });
    boxes.forEach(function (b) { b.addEventListener("change", sync); });
    sync();
  });
});
