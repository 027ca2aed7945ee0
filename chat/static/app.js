// Small glue on top of htmx. The pages work without this file; it adds:
// the CSRF header on htmx requests, Enter-to-send, keeping the stream's resume
// point current, dropping frames already shown, scrolling, local times,
// marking one's own messages, the live status and keyboard shortcuts.
(function () {
  "use strict";

  var csrfToken = function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // Editing a message: Enter saves, Shift+Enter breaks the line, Escape cancels.
  document.addEventListener("keydown", function (event) {
    var form = event.target.closest && event.target.closest(".edit-form");
    if (!form || event.isComposing) return;
    if (event.key === "Escape") {
      event.preventDefault();
      form.querySelector(".cancel-edit").click();
    } else if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  // The message put back after an edit keeps the focus the editor had.
  document.addEventListener("htmx:afterSwap", function (event) {
    var message = event.detail.target;
    if (!message || !message.classList || !message.classList.contains("message")) return;
    var fresh = document.getElementById(message.id);
    if (!fresh) return;
    var field = fresh.querySelector(".edit-form textarea");
    if (field) {
      field.focus();
      field.setSelectionRange(field.value.length, field.value.length);
    } else if (!document.activeElement || document.activeElement === document.body) {
      fresh.focus();
    }
  });

  // Enter sends, Shift+Enter breaks the line (and IME composition is left alone).
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target.id !== "composer-body" || event.key !== "Enter") return;
    if (event.shiftKey || event.isComposing || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    var files = target.form.elements.files;
    if (target.value.trim() === "" && !(files && files.files.length)) return;
    // One send at a time, in order: a message typed while the previous one is
    // still on its way goes out as soon as that one is answered.
    if (sending) sendNext = true;
    else target.form.requestSubmit();
  });
  // Whether a message is on its way, followed from its request and its answer: the
  // answer's fresh composer is htmx's only once settled (sending from it sooner would
  // be a plain form post, a page load), and meanwhile it still shows the old one's
  // htmx-request class, so the class cannot tell.
  var sending = false;
  var sendNext = false;
  var settling = false;
  function readyToSend() {
    sending = false;
    if (!sendNext) return;
    sendNext = false;
    var form = document.getElementById("composer");
    if (form && form.elements.body.value.trim() !== "") form.requestSubmit();
  }
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.elt.id !== "composer" || !settling) return;
    settling = false;
    readyToSend();
  });

  // The composer empties the moment a message is sent (its text is already in the
  // request), so typing can go on at once; the reply's fresh composer replaces it
  // only if nothing new was typed meanwhile, or to show an error with the text.
  function hasDraft(form) {
    var files = form.elements.files;
    return form.elements.body.value !== "" || Boolean(files && files.files.length);
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target.id !== "composer") return;
    keepDraft(event.target);
    event.target.elements.body.value = "";
    if (event.target.elements.files) event.target.elements.files.value = "";
    sending = true;
    settling = false;
    // After htmx's own handler: the answer is swapped in (and then settles) or not.
    event.detail.xhr.addEventListener("loadend", function () {
      if (!settling) readyToSend();
    });
  });
  // --- Errors never replace content. A refusal answered with the same element again
  // (the composer or an edit form with its error and the text) is swapped in; any other
  // error is said next to what it concerns and nothing is replaced. 401: the session
  // ended (htmx requests get it instead of the login page). -------------------------
  var sentDraft = null;
  function keepDraft(form) {
    var files = new DataTransfer();
    if (form.elements.files) {
      Array.prototype.forEach.call(form.elements.files.files, function (file) { files.items.add(file); });
    }
    sentDraft = { body: form.elements.body.value, files: files.files };
  }
  // A message that was not sent comes back into the composer, unless something new
  // was typed meanwhile (or the answer brought it back already).
  function restoreDraft() {
    var form = document.getElementById("composer");
    if (!form || !sentDraft) return;
    if (form.elements.body.value === "") form.elements.body.value = sentDraft.body;
    var input = form.elements.files;
    if (input && !input.files.length && sentDraft.files.length) input.files = sentDraft.files;
    sentDraft = null;
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt.id === "composer" && !event.detail.successful) restoreDraft();
  });
  document.addEventListener("htmx:sendError", function (event) {
    if (event.detail.elt.id === "composer") restoreDraft();
  });

  var errorCount = 0;
  function showInlineError(element, text) {
    if (!element || !document.body.contains(element)) {
      document.getElementById("flash").textContent = text;
      return;
    }
    var form = element.closest("form");
    var anchor = form || element;
    var error = form ? form.querySelector(".inline-error") : anchor.nextElementSibling;
    if (!error || !error.classList.contains("inline-error")) {
      error = document.createElement("p");
      error.className = "error inline-error";
      error.setAttribute("role", "alert");
      error.id = "inline-error-" + (errorCount += 1);
      if (form) form.appendChild(error);
      else anchor.after(error);
    }
    error.textContent = text;
    var field = form && form.querySelector("input:not([type=hidden]), textarea");
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", error.id);
    }
  }
  function clearInlineError(element) {
    var form = element.closest && element.closest("form");
    var error = form ? form.querySelector(".inline-error") : element.nextElementSibling;
    if (error && error.classList.contains("inline-error")) error.remove();
    var field = form && form.querySelector("[aria-invalid][aria-describedby^=inline-error-]");
    if (field) {
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
    }
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    clearInlineError(event.detail.elt);
  });
  function errorText(xhr) {
    var template = document.createElement("template");
    template.innerHTML = xhr.responseText || "";
    var text = template.content.textContent.replace(/\s+/g, " ").trim();
    return text && text.length < 300 ? text : "That did not work (" + xhr.status + "). Please try again.";
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || xhr.status < 400) return;
    if (xhr.status === 401) {
      event.detail.shouldSwap = false;
      signedOut();
      return;
    }
    var template = document.createElement("template");
    template.innerHTML = (xhr.responseText || "").trim();
    var fresh = template.content.firstElementChild;
    var target = event.detail.target;
    if (fresh && target && fresh.id && fresh.id === target.id) return;
    event.detail.shouldSwap = false;
    if (xhr.status < 500) showInlineError(event.detail.requestConfig.elt, errorText(xhr));
  });

  // --- Banners: the session or the membership ended (said by the room's stream, or
  // found out when its reconnecting fails). The page stays as it was; the way on is a link.
  var liveSource = null;
  function banner(text, linkText, href) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    flash.textContent = text + " ";
    var link = document.createElement("a");
    link.href = href;
    link.textContent = linkText;
    flash.appendChild(link);
  }
  function stopLive() {
    if (liveSource) liveSource.close();
    var status = document.getElementById("live-status");
    if (status) status.textContent = "";
  }
  var ended = false;
  function signedOut() {
    if (ended) return;
    ended = true;
    stopLive();
    var flash = document.getElementById("flash");
    var next = window.location.pathname + window.location.search;
    banner("You were signed out.", "Log in again", flash.dataset.loginUrl + "?next=" + encodeURIComponent(next));
  }
  function removed() {
    if (ended) return;
    ended = true;
    stopLive();
    banner("You were removed from this room.", "Back to your rooms", document.getElementById("flash").dataset.indexUrl);
  }
  document.addEventListener("htmx:sseOpen", function (event) {
    liveSource = event.detail.source;
    if (!liveSource || liveSource.chatEnded) return;
    liveSource.chatEnded = true;
    liveSource.addEventListener("ended", function (frame) {
      if (frame.data === "signed-out") signedOut();
      else removed();
    });
  });
  // A stream that keeps failing may have been ended while this tab was away (offline,
  // asleep): asked once in a while, the stream's own answer says why.
  var lastProbe = 0;
  document.addEventListener("htmx:sseError", function (event) {
    var frame = event.target.closest && event.target.closest("[sse-connect]");
    if (ended || !frame || Date.now() - lastProbe < 10000) return;
    lastProbe = Date.now();
    var stop = new AbortController();
    fetch(frame.getAttribute("sse-connect"), {
      credentials: "same-origin",
      headers: { "HX-Request": "true" },
      signal: stop.signal,
    }).then(function (response) {
      stop.abort();
      if (response.status === 401) signedOut();
      else if (response.status === 403 || response.status === 404) removed();
    }).catch(function () {});
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = event.detail.elt;
    if (form.id !== "composer") return;
    if (event.detail.xhr.status < 300 && hasDraft(form)) event.detail.shouldSwap = false;
    settling = event.detail.shouldSwap;
  });

  // Files pasted into the composer or dropped on it join those chosen with its
  // "Attach files" field (the field is what is sent, with or without this script).
  function attach(form, files) {
    var input = form.elements.files;
    if (!input || !files || !files.length) return false;
    var all = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (file) { all.items.add(file); });
    Array.prototype.forEach.call(files, function (file) { all.items.add(file); });
    input.files = all.files;
    return true;
  }
  document.addEventListener("paste", function (event) {
    var form = event.target.closest && event.target.closest("#composer");
    if (form && event.clipboardData && attach(form, event.clipboardData.files)) {
      event.preventDefault();
    }
  });
  ["dragenter", "dragover"].forEach(function (kind) {
    document.addEventListener(kind, function (event) {
      var form = event.target.closest && event.target.closest("#composer");
      if (!form || !event.dataTransfer || event.dataTransfer.types.indexOf("Files") === -1) return;
      event.preventDefault();
      form.classList.add("is-dropping");
    });
  });
  ["dragleave", "drop"].forEach(function (kind) {
    document.addEventListener(kind, function (event) {
      var form = event.target.closest && event.target.closest("#composer");
      if (!form) return;
      form.classList.remove("is-dropping");
      if (kind === "drop" && event.dataTransfer && attach(form, event.dataTransfer.files)) {
        event.preventDefault();
      }
    });
  });

  // Replying: a message's Reply link (a plain link to ?reply=SEQ without this
  // script) fills the bar above the composer in place, and Cancel empties it.
  var QUOTE_CHARS = 140;
  function setReply(bar, seq, author, excerpt) {
    bar.querySelector("input[name=reply_to]").value = seq;
    bar.querySelector("[data-reply-author]").textContent = "@" + (author || "deleted user");
    bar.querySelector("[data-reply-excerpt]").textContent = excerpt;
    bar.hidden = !seq;
  }
  document.addEventListener("click", function (event) {
    var bar = document.querySelector("[data-reply-bar]");
    var link = event.target.closest && event.target.closest("a[data-reply], a[data-cancel-reply]");
    if (!bar || !link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    var message = link.hasAttribute("data-reply") && link.closest("[data-seq]");
    if (message) {
      var text = message.querySelector(".body").textContent.replace(/\s+/g, " ").trim();
      if (text.length > QUOTE_CHARS) text = text.slice(0, QUOTE_CHARS - 1).trimEnd() + "…";
      setReply(bar, message.dataset.seq, message.dataset.author, text || "message deleted");
    } else {
      setReply(bar, "", "", "");
    }
    document.getElementById("composer-body").focus();
  });
  // The reply is in the request: the bar empties with the text (see below).
  document.addEventListener("htmx:beforeRequest", function (event) {
    var bar = event.target.id === "composer" && event.target.querySelector("[data-reply-bar]");
    if (bar) setReply(bar, "", "", "");
  });

  function log() {
    return document.getElementById("messages");
  }

  function lastSeq() {
    var messages = log() ? log().querySelectorAll(":scope > [data-seq]") : [];
    return messages.length ? Number(messages[messages.length - 1].dataset.seq) : 0;
  }

  function nearBottom(element) {
    return element.scrollHeight - element.scrollTop - element.clientHeight < 80;
  }

  // In the time zone the reader chose on /account (<body data-time-zone>), else the browser's.
  var timeZone = document.body.dataset.timeZone || undefined;
  var timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", timeZone: timeZone });
  var dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short", timeZone: timeZone });

  function decorate(root) {
    var viewer = document.body.dataset.viewer;
    root.querySelectorAll(".message").forEach(function (message) {
      if (viewer && message.dataset.author === viewer) message.classList.add("mine");
      var more = message.querySelector(".more");
      if (more && !more.hasAttribute("aria-expanded")) {
        more.setAttribute("role", "button");
        more.setAttribute("aria-expanded", "false");
      }
      message.querySelectorAll(".reaction[data-by]").forEach(function (button) {
        var mine = viewer && button.dataset.by.split(" ").indexOf(viewer) !== -1;
        button.setAttribute("aria-pressed", mine ? "true" : "false");
      });
      var time = message.querySelector("time[datetime]");
      if (time && !time.title) {
        // The server writes the date and time in UTC (what a page without this script
        // shows); here, the reader's own: HH:MM to see, the full date to hear and hover.
        var when = new Date(time.getAttribute("datetime"));
        var full = dateFormat.format(when);
        time.textContent = "";
        time.appendChild(document.createElement("span")).textContent = timeFormat.format(when);
        time.firstChild.setAttribute("aria-hidden", "true");
        var spoken = time.appendChild(document.createElement("span"));
        spoken.className = "visually-hidden";
        spoken.textContent = full;
        time.title = full;
      }
    });
    var container = log();
    if (container && (root === document || container.contains(root) || root.contains(container))) {
      arrangeByDay(container);
    }
  }

  // --- Day dividers ("Today", "Yesterday", then the date in the reader's locale) and
  // grouping: a message by the same author within a few minutes of the one before shows
  // no name (it is still there for screen readers, and its actions stay Tab stops).
  // Redone over the whole log after every change to it: page, older pages and live.
  var GROUP_MS = 5 * 60 * 1000;
  var dayFormat = new Intl.DateTimeFormat(undefined, {
    weekday: "long", day: "numeric", month: "long", year: "numeric",
  });
  function dayKey(when) {
    return when.getFullYear() + "-" + (when.getMonth() + 1) + "-" + when.getDate();
  }
  function dayLabel(when) {
    var today = new Date();
    if (dayKey(when) === dayKey(today)) return "Today";
    var yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(when) === dayKey(yesterday)) return "Yesterday";
    return dayFormat.format(when);
  }
  function arrangeByDay(container) {
    var wanted = new Set();
    var previous = null;
    messagesIn(container).forEach(function (message) {
      var time = message.querySelector("time[datetime]");
      if (!time) return;
      var when = new Date(time.getAttribute("datetime"));
      var day = dayKey(when);
      var newDay = !previous || previous.day !== day;
      if (newDay) wanted.add(dayDividerBefore(message, day, dayLabel(when)));
      var continued = !newDay && previous.element === message.previousElementSibling &&
        previous.author === message.dataset.author && when - previous.when < GROUP_MS;
      message.classList.toggle("is-continued", continued);
      previous = { day: day, when: when, author: message.dataset.author, element: message };
    });
    container.querySelectorAll(":scope > .day-divider").forEach(function (divider) {
      if (!wanted.has(divider)) divider.remove();
    });
  }
  function dayDividerBefore(message, day, label) {
    // The day comes before the "New messages" divider when both go before one message.
    var place = message;
    while (place.previousElementSibling && place.previousElementSibling.id === "new-messages") {
      place = place.previousElementSibling;
    }
    var divider = place.previousElementSibling;
    if (!divider || !divider.classList.contains("day-divider")) {
      divider = document.createElement("h2");
      divider.className = "day-divider";
      place.before(divider);
    }
    divider.dataset.day = day;
    if (divider.textContent !== label) divider.textContent = label;
    return divider;
  }

  // The stream's cursor: "SEQ" or "SEQ.CHANGE" (chat/sse.py). The page has every
  // message up to lastSeq() and every change up to lastChange.
  var lastChange = 0;
  function cursorOf(id) {
    var parts = String(id || "").split(".");
    return { seq: parseInt(parts[0], 10) || 0, change: parseInt(parts[1], 10) || 0 };
  }
  function keepResumePoint(frame, id) {
    lastChange = Math.max(lastChange, cursorOf(id).change);
    if (!frame) return;
    // htmx reconnects with the URL it was given; keep ?after= at what the page has.
    var url = new URL(frame.getAttribute("sse-connect"), window.location.href);
    url.searchParams.set("after", lastSeq() + (lastChange ? "." + lastChange : ""));
    frame.setAttribute("sse-connect", url.pathname + url.search);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var frame = document.querySelector("[sse-connect]");
    if (frame) lastChange = cursorOf(new URL(frame.getAttribute("sse-connect"), window.location.href)
      .searchParams.get("after")).change;
  });

  // A frame the page already shows (e.g. after a reconnect) is not swapped in twice.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var seq = cursorOf(event.detail.lastEventId).seq;
    if (seq && seq <= lastSeq()) event.preventDefault();
    var stick = log() && nearBottom(log());
    event.target.dataset.stickToBottom = stick ? "yes" : "no";
  });

  document.addEventListener("htmx:sseMessage", function (event) {
    keepResumePoint(event.target.closest("[sse-connect]"), event.detail.lastEventId);
    var empty = log() && log().querySelector("[data-empty]");
    if (empty) empty.remove();
    if (!log()) return;
    decorate(log());
    var message = document.getElementById("message-" + cursorOf(event.detail.lastEventId).seq);
    var mine = message && message.dataset.author === document.body.dataset.viewer;
    // At the bottom (or having just sent it), the newest stays in view; scrolled up
    // to read, the reader keeps their place and is told what came below.
    if (event.target.dataset.stickToBottom === "yes" || mine) scrollToNewest();
    else if (message) countNewBelow(message);
  });

  // "N new messages ↓": messages that came while the reader was scrolled up.
  var newBelow = [];
  function newBelowButton() {
    return document.querySelector("[data-new-below]");
  }
  function showNewBelow() {
    var button = newBelowButton();
    if (!button) return;
    button.hidden = newBelow.length === 0;
    button.textContent = newBelow.length === 1 ? "1 new message ↓" : newBelow.length + " new messages ↓";
  }
  function countNewBelow(message) {
    newBelow.push(message);
    showNewBelow();
  }
  function scrollToNewest() {
    log().scrollTop = log().scrollHeight;
    newBelow = [];
    showNewBelow();
  }
  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest("[data-new-below]")) return;
    var first = newBelow[0];
    scrollToNewest();
    // Keyboard readers go on from the first message they had not seen (↓ walks on).
    if (first && document.body.contains(first)) {
      setCurrent(first);
      first.focus({ preventScroll: true });
    } else {
      log().focus({ preventScroll: true });
    }
  });
  document.addEventListener(
    "scroll",
    function (event) {
      if (event.target === log() && newBelow.length && nearBottom(log())) {
        newBelow = [];
        showNewBelow();
      }
    },
    true
  );

  // Edits, deletes and reactions: the message as it now stands replaces the one shown
  // (unless it is being edited here; saving brings the new state anyway).
  function replaceMessage(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var fresh = template.content.firstElementChild;
    var shown = fresh && document.getElementById(fresh.id);
    if (!shown || shown.classList.contains("editing")) return;
    var focus = document.activeElement;
    var hadFocus = shown.contains(focus);
    var menu = shown.querySelector(".message-menu");
    var more = fresh.querySelector(".more");
    shown.replaceWith(fresh);
    htmx.process(fresh);
    decorate(fresh.parentNode);
    if (menu && more) {
      more.after(menu);  // an open menu stays open, focus and all
      more.setAttribute("aria-expanded", "true");
    }
    if (hadFocus) {
      // Moving the open menu across drops the focus it holds: given back to the same control.
      if (fresh.contains(focus)) {
        if (document.activeElement !== focus) focus.focus();
      } else {
        (more || fresh).focus();
      }
    }
    updateQuotesOf(fresh);
  }
  // Replies shown on the page quote the message as it now stands (the server does the
  // same for every page and replay; templates/messages/_message.html).
  var QUOTE_CHARS = 140;
  function updateQuotesOf(message) {
    var seq = message.dataset.seq;
    var body = message.querySelector(".body");
    var text = message.classList.contains("is-deleted") || !body
      ? ""
      : body.textContent.replace(/\s+/g, " ").trim();
    if (text.length > QUOTE_CHARS) text = text.slice(0, QUOTE_CHARS - 1).trim() + "…";
    var cite = "?at=" + seq + "#message-" + seq;
    document.querySelectorAll(".reply-quote").forEach(function (quote) {
      var excerpt = quote.querySelector(".reply-excerpt");
      if (!excerpt || !quote.getAttribute("cite").endsWith(cite)) return;
      var fresh = document.createElement(text ? "span" : "em");
      fresh.className = "reply-excerpt";
      fresh.textContent = text || "message deleted";
      excerpt.replaceWith(fresh);
    });
  }
  document.addEventListener("htmx:sseOpen", function (event) {
    var source = event.detail.source;
    var frame = event.target.closest("[sse-connect]");
    if (!source || source.chatListening) return;
    source.chatListening = true;
    ["edit", "delete"].forEach(function (kind) {
      source.addEventListener(kind, function (change) {
        replaceMessage(change.data);
        keepResumePoint(frame, change.lastEventId);
      });
    });
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    // Swaps from the SSE extension carry no detail.target: decorate the log then.
    var target = event.detail.target;
    decorate((target && target.parentNode) || document);
  });

  // "Load older messages" puts the older page above what the reader is looking at:
  // the view stays where it was, and focus, if it was on the link, moves to the next
  // "older" link (or the log) instead of being lost with the replaced link.
  function isOlderLink(element) {
    return element && element.classList && element.classList.contains("older");
  }
  var distanceFromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (isOlderLink(event.detail.elt) && log()) {
      distanceFromBottom = log().scrollHeight - log().scrollTop;
    }
  });
  // An outerHTML swap reports each new element (not the link) as swapped: the first
  // report after the link's swap puts the view back, once the whole page is in.
  document.addEventListener("htmx:afterSwap", function () {
    if (distanceFromBottom === null || !log()) return;
    log().scrollTop = log().scrollHeight - distanceFromBottom;
    distanceFromBottom = null;
    if (!document.activeElement || document.activeElement === document.body) {
      (log().querySelector(".older") || log()).focus({ preventScroll: true });
    }
  });

  // The stream's state, said in the page's status region (the log itself only
  // announces messages): once when the connection drops and once when it is back.
  var streamLost = false;
  function setLiveStatus(text) {
    var status = document.getElementById("live-status");
    if (status && status.textContent !== text) status.textContent = text;
  }
  document.addEventListener("htmx:sseError", function () {
    if (ended) return;
    streamLost = true;
    setLiveStatus("Connection lost. Reconnecting…");
  });
  document.addEventListener("htmx:sseOpen", function () {
    if (streamLost) setLiveStatus("Reconnected.");
    streamLost = false;
  });

  // Errors that are not fragments (5xx, network) still get said out loud.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 500) {
      document.getElementById("flash").textContent =
        "The server could not do that (" + status + "). Please try again.";
    }
  });
  document.addEventListener("htmx:sendError", function () {
    document.getElementById("flash").textContent =
      "Could not reach the server. Check your connection and try again.";
  });

  // --- A message's "More" menu: fetched on opening (it depends on who asks), closed by
  // pressing "More" again or Escape; one open at a time. ------------------------------
  function closeMenu(more, refocus) {
    var menu = more.nextElementSibling;
    if (menu && menu.classList.contains("message-menu")) menu.remove();
    more.setAttribute("aria-expanded", "false");
    if (refocus) more.focus();
  }
  function openMenus() {
    return document.querySelectorAll('.more[aria-expanded="true"]');
  }
  document.addEventListener(
    "click",
    function (event) {
      var more = event.target.closest && event.target.closest(".more");
      if (!more) return;
      openMenus().forEach(function (open) {
        if (open !== more) closeMenu(open, false);
      });
      if (more.getAttribute("aria-expanded") === "true") {
        // Already open: close it instead of fetching it again (before htmx sees the click).
        event.preventDefault();
        event.stopPropagation();
        closeMenu(more, true);
      }
    },
    true
  );
  document.addEventListener("keydown", function (event) {
    if (event.key === " " && event.target.classList && event.target.classList.contains("more")) {
      event.preventDefault(); // a button opens on Space too
      event.target.click();
      return;
    }
    if (event.key !== "Escape") return;
    var menu = event.target.closest && event.target.closest(".message-menu");
    var more = menu && menu.previousElementSibling;
    if (more && more.classList.contains("more")) {
      event.preventDefault();
      closeMenu(more, true);
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var more = event.detail.elt;
    if (!more || !more.classList || !more.classList.contains("more")) return;
    more.setAttribute("aria-expanded", "true");
    var menu = more.nextElementSibling;
    var first = menu && menu.querySelector("button, input:not([type=hidden]), a[href]");
    if (first) first.focus();
  });

  // --- The message log is one Tab stop: ↑/↓ move between messages, and Tab reaches
  // the links and buttons of the message last moved to (the newest at first). ---------
  var CONTROLS = "a[href], button, input, summary";
  function messagesIn(container) {
    return Array.prototype.slice.call(container.querySelectorAll(":scope > .message"));
  }
  function setCurrent(message) {
    var container = log();
    if (!container || !message) return;
    container.querySelectorAll(":scope > .message").forEach(function (each) {
      var current = each === message;
      each.classList.toggle("is-current", current);
      each.querySelectorAll(CONTROLS).forEach(function (control) {
        if (current) control.removeAttribute("tabindex");
        else control.setAttribute("tabindex", "-1");
      });
    });
  }
  function currentMessage() {
    var container = log();
    if (!container) return null;
    var messages = messagesIn(container);
    return container.querySelector(":scope > .message.is-current") || messages[messages.length - 1];
  }
  document.addEventListener("focusin", function (event) {
    var message = event.target.closest && event.target.closest("#messages > .message");
    if (message && !message.classList.contains("is-current")) setCurrent(message);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var container = log();
    if (!container || !container.contains(event.target) || isTextField(event.target)) return;
    if (event.target.closest(".message-menu")) return;
    var messages = messagesIn(container);
    if (!messages.length) return;
    var from = event.target === container ? null : event.target.closest(".message");
    var index = from ? messages.indexOf(from) : messages.indexOf(currentMessage());
    if (from || event.target !== container) {
      index += event.key === "ArrowDown" ? 1 : -1;
    }
    var next = messages[Math.max(0, Math.min(messages.length - 1, index))];
    event.preventDefault();
    setCurrent(next);
    next.focus();
  });
  // New messages (live or older pages) start out of the Tab order. While the reader is
  // not in the log, the current message is the newest: Shift+Tab from the composer
  // reaches the message just said.
  function followNewest() {
    var container = log();
    if (!container) return;
    var messages = messagesIn(container);
    var away = !container.contains(document.activeElement);
    setCurrent(away ? messages[messages.length - 1] : currentMessage());
  }
  document.addEventListener("htmx:afterSettle", followNewest);
  document.addEventListener("htmx:sseMessage", followNewest);

  // --- Keyboard shortcuts; templates/_shortcuts.html lists them for people. ---------
  var shortcuts = document.getElementById("shortcuts");
  var focusBeforeShortcuts = null;

  function openShortcuts() {
    if (!shortcuts || shortcuts.open) return;
    focusBeforeShortcuts = document.activeElement;
    shortcuts.showModal();
  }
  if (shortcuts) {
    shortcuts.addEventListener("close", function () {
      // "close" comes a task after the dialog closed: the browser may have put focus
      // back already and the reader moved it on (Esc then "/"). Only fill in a loss.
      var lost = !document.activeElement || document.activeElement === document.body;
      if (lost && focusBeforeShortcuts && document.body.contains(focusBeforeShortcuts)) {
        focusBeforeShortcuts.focus();
      }
      focusBeforeShortcuts = null;
    });
  }
  document.querySelectorAll("[data-open-shortcuts]").forEach(function (button) {
    button.hidden = false; // without this script it could do nothing
    button.addEventListener("click", openShortcuts);
  });

  // Alt+↑/↓: the previous/next room in the room list, wrapping around; with Shift,
  // only rooms with unread messages. From a page that is not a room, ↓ starts at the top.
  function goToRoom(step, unreadOnly) {
    var links = Array.prototype.slice.call(document.querySelectorAll("a[data-room-link]"));
    var current = links.findIndex(function (link) {
      return link.getAttribute("aria-current") === "page";
    });
    var start = current !== -1 ? current : step > 0 ? -1 : 0;
    for (var i = 1; i <= links.length; i++) {
      var index = (((start + step * i) % links.length) + links.length) % links.length;
      if (index === current) break;
      if (!unreadOnly || links[index].dataset.unread) {
        window.location.assign(links[index].href);
        return true;
      }
    }
    return false;
  }

  function isTextField(element) {
    return element.isContentEditable || element.matches("input, textarea, select");
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey) return;
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      if (goToRoom(event.key === "ArrowDown" ? 1 : -1, event.shiftKey)) event.preventDefault();
      return;
    }
    // Everything else would get in the way of typing.
    if (event.altKey || isTextField(event.target)) return;
    if (event.key === "?") {
      event.preventDefault();
      openShortcuts();
    } else if (event.key === "/") {
      var search = document.getElementById("search-q");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    } else if (event.key === "PageUp" && log() && log().contains(event.target)) {
      var older = log().querySelector(".older");
      if (older && log().scrollTop < 1) {
        event.preventDefault();
        older.click();
      }
    }
  });

  // The room opens at the message a permalink names, else at the "New messages"
  // divider when there are unread ones, else at the newest message.
  function openAtPlace() {
    var container = log();
    if (!container) return;
    var target = window.location.hash && document.getElementById(window.location.hash.slice(1));
    if (target) {
      target.scrollIntoView({ block: "center" });
      return;
    }
    container.scrollTop = container.scrollHeight;
    var divider = document.getElementById("new-messages");
    if (divider) {
      var above = divider.getBoundingClientRect().top - container.getBoundingClientRect().top;
      container.scrollTop += Math.min(0, above - 8);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    decorate(document);
    if (log()) setCurrent(currentMessage());
    openAtPlace();
  });
})();
