// The composer's helpers: @mention suggestions and ↑ to edit your last message. The
// composer works without this file (a mention is typed in full; Edit is in the menu).
//
// Suggestions follow the ARIA combobox pattern as far as a <textarea> may: the field
// keeps its textbox role and says aria-autocomplete="list", aria-controls the listbox
// and aria-activedescendant its current option; a status line says how many there are.
// ↑/↓ choose, Enter or Tab takes one, Escape closes the list.
(function () {
  "use strict";

  var MENTION_BEFORE_CARET = /(^|[^A-Za-z0-9_@.+-])@([A-Za-z0-9_-]{0,31})$/;
  var MAX_SUGGESTIONS = 8;
  var viewer = document.body.dataset.viewer || "";
  var suggestions = [];
  var active = -1;

  function field() {
    return document.getElementById("composer-body");
  }

  function members() {
    var names = [];
    document.querySelectorAll("#member-list [data-presence]").forEach(function (label) {
      var name = label.dataset.presence;
      if (name && name !== viewer && names.indexOf(name) === -1) names.push(name);
    });
    return names;
  }

  function status() {
    var line = document.getElementById("mention-status");
    if (!line) {
      line = document.createElement("p");
      line.id = "mention-status";
      line.className = "visually-hidden";
      line.setAttribute("role", "status");
      document.body.appendChild(line);
    }
    return line;
  }

  function listbox(create) {
    var box = document.getElementById("mention-list");
    var composer = document.getElementById("composer");
    if (box && composer && !composer.contains(box)) {
      box.remove(); // left behind by a composer that was replaced
      box = null;
    }
    if (!box && create && composer) {
      box = document.createElement("ul");
      box.id = "mention-list";
      box.className = "mention-list";
      box.setAttribute("role", "listbox");
      box.setAttribute("aria-label", "Members to mention");
      composer.appendChild(box);
    }
    return box;
  }

  function typedMention(textarea) {
    if (textarea.selectionStart !== textarea.selectionEnd) return null;
    var match = MENTION_BEFORE_CARET.exec(textarea.value.slice(0, textarea.selectionStart));
    return match ? { query: match[2], start: textarea.selectionStart - match[2].length - 1 } : null;
  }

  function close() {
    var box = listbox(false);
    if (box) box.remove();
    var textarea = field();
    if (textarea) {
      textarea.removeAttribute("aria-activedescendant");
      textarea.removeAttribute("aria-controls");
    }
    if (suggestions.length) status().textContent = "";
    suggestions = [];
    active = -1;
  }

  function show(names) {
    var textarea = field();
    var box = listbox(true);
    if (!textarea || !box) return;
    suggestions = names;
    active = 0;
    box.replaceChildren();
    names.forEach(function (name, index) {
      var option = document.createElement("li");
      option.id = "mention-option-" + index;
      option.setAttribute("role", "option");
      option.textContent = "@" + name;
      option.dataset.username = name;
      box.appendChild(option);
    });
    textarea.setAttribute("aria-autocomplete", "list");
    textarea.setAttribute("aria-controls", box.id);
    mark();
    status().textContent =
      names.length + (names.length === 1 ? " member" : " members") +
      " to mention: ↑ and ↓ to choose, Enter to take, Escape to close.";
  }

  function mark() {
    var box = listbox(false);
    if (!box) return;
    box.querySelectorAll("[role=option]").forEach(function (option, index) {
      option.setAttribute("aria-selected", index === active ? "true" : "false");
    });
    field().setAttribute("aria-activedescendant", "mention-option-" + active);
  }

  function take(name) {
    var textarea = field();
    var typed = textarea && typedMention(textarea);
    if (!typed) return close();
    var before = textarea.value.slice(0, typed.start);
    var after = textarea.value.slice(textarea.selectionStart);
    var inserted = "@" + name + " ";
    textarea.value = before + inserted + after.replace(/^ /, "");
    var caret = before.length + inserted.length;
    textarea.setSelectionRange(caret, caret);
    close();
    status().textContent = "@" + name + " added.";
  }

  document.addEventListener("input", function (event) {
    if (event.target.id !== "composer-body") return;
    var typed = typedMention(event.target);
    if (!typed) return close();
    var query = typed.query.toLowerCase();
    var names = members().filter(function (name) {
      return name.toLowerCase().indexOf(query) === 0;
    });
    if (!names.length) return close();
    show(names.slice(0, MAX_SUGGESTIONS));
  });

  // Before the page's own keys (Enter sends, ↑/↓ walk the log): capture, on the document.
  document.addEventListener(
    "keydown",
    function (event) {
      var textarea = event.target;
      if (textarea.id !== "composer-body" || event.isComposing) return;
      if (suggestions.length) {
        if (event.key === "ArrowDown" || event.key === "ArrowUp") {
          active = (active + (event.key === "ArrowDown" ? 1 : -1) + suggestions.length) % suggestions.length;
          mark();
        } else if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey) {
          take(suggestions[active]);
        } else if (event.key === "Escape") {
          close();
        } else {
          return;
        }
        event.preventDefault();
        event.stopPropagation();
        return;
      }
      if (event.key === "ArrowUp" && textarea.value === "" && !event.altKey && !event.ctrlKey &&
          !event.metaKey && !event.shiftKey && editLastMessage()) {
        event.preventDefault();
        event.stopPropagation();
      }
    },
    true
  );

  // A click on a suggestion takes it (mousedown would otherwise move focus away).
  document.addEventListener("mousedown", function (event) {
    var option = event.target.closest && event.target.closest("#mention-list [role=option]");
    if (!option) return;
    event.preventDefault();
    take(option.dataset.username);
  });
  document.addEventListener("focusout", function (event) {
    if (event.target.id === "composer-body") close();
  });

  // ↑ in an empty composer: edit your newest message that is not deleted (its editor
  // opens in place, focused, as the menu's Edit does).
  function editLastMessage() {
    var mine = Array.prototype.filter.call(
      document.querySelectorAll("#messages > .message[data-seq]"),
      function (message) {
        return message.dataset.author === viewer && !message.classList.contains("is-deleted");
      }
    );
    var message = mine[mine.length - 1];
    var more = message && message.querySelector("a.more[href]");
    if (!more || !window.htmx) return false;
    var url = more.getAttribute("href").replace(/\/actions$/, "/edit");
    window.htmx.ajax("GET", url, { target: message, swap: "outerHTML" });
    return true;
  }
})();
