// Presence, typing, unread counts, read markers, @mention highlights and browser
// notifications. The pages work without this file: counts are then right on every
// page load, and nothing else changes while you look.
//
// Frames for presence and typing are the same bytes for everyone in a room; this
// file personalises them (your own name is never shown as typing). The rooms page
// opens one stream (GET /events) for all of its rooms' counts.
(function () {
  "use strict";

  var viewer = document.body.dataset.viewer || "";
  var baseTitle = document.title;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function post(url, fields) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken() },
      body: new URLSearchParams(fields),
    });
  }

  // "(3) general · Chat" while there is something you have not seen.
  function showUnreadInTitle(count) {
    document.title = count > 0 ? "(" + count + ") " + baseTitle : baseTitle;
  }

  // --- @mentions ------------------------------------------------------------------------

  function highlightMentions(root) {
    var me = viewer.toLowerCase();
    root.querySelectorAll(".mention[data-username]").forEach(function (mention) {
      if (!me || mention.dataset.username.toLowerCase() !== me) return;
      mention.classList.add("mentions-me");
      var message = mention.closest(".message");
      if (message) message.classList.add("mentions-me");
    });
  }

  // --- notifications: opt-in, only while hidden, one per message across tabs -------------

  var NOTIFIED = "chat.notified";

  function withNotifiedKeys(change) {
    // Web Locks serialise tabs; without them two tabs could both notify (the
    // notification tag still makes the second replace the first).
    var run = function () {
      var keys;
      try {
        keys = JSON.parse(localStorage.getItem(NOTIFIED) || "[]");
      } catch (error) {
        keys = [];
      }
      if (change(keys)) localStorage.setItem(NOTIFIED, JSON.stringify(keys.slice(-200)));
    };
    if (navigator.locks) navigator.locks.request(NOTIFIED, run);
    else run();
  }

  // A tab showing the message marks it seen, so hidden tabs do not notify about it.
  function markSeen(key) {
    withNotifiedKeys(function (keys) {
      if (keys.indexOf(key) !== -1) return false;
      keys.push(key);
      return true;
    });
  }

  function notifyOnce(key, title, body, url) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    // Give a visible tab the moment it needs to mark the message seen first.
    window.setTimeout(function () {
      if (!document.hidden) return;
      withNotifiedKeys(function (keys) {
        if (keys.indexOf(key) !== -1) return false;
        keys.push(key);
        var notification = new Notification(title, { body: body, tag: "chat-" + key });
        notification.onclick = function () {
          window.focus();
          window.location.href = url;
          notification.close();
        };
        return true;
      });
    }, 300);
  }

  function showPermissionButtons() {
    var ask = "Notification" in window && Notification.permission === "default";
    document.querySelectorAll("[data-enable-notifications]").forEach(function (button) {
      button.hidden = !ask;
    });
  }

  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest("[data-enable-notifications]")) return;
    Notification.requestPermission().then(showPermissionButtons);
  });
  document.addEventListener("htmx:afterSwap", showPermissionButtons);

  // --- the room page ----------------------------------------------------------------------

  var room = document.querySelector("[data-live-room]");

  function roomLog() {
    return document.getElementById("messages");
  }

  // A frame's id is the stream's cursor: "SEQ", or "SEQ.CHANGE" once the room has had
  // edits, deletes or reactions (chat/sse.py). The message is the SEQ part.
  function seqOf(id) {
    return parseInt(String(id || "").split(".")[0], 10) || 0;
  }

  function newestSeq() {
    var newest = roomLog().querySelector(":scope > article[data-seq]:last-of-type");
    return newest ? Number(newest.dataset.seq) : 0;
  }

  // The read marker follows what a visible tab has shown (never goes back): 1 s after
  // the last message, and in a room that never pauses that long, 5 s after the first
  // message not yet marked, so a busy room's reader is not left with unread counts.
  var readSent = 0;
  var readTimer = null;
  var readDue = 0;
  function markRead() {
    var now = Date.now();
    if (readTimer === null) readDue = now + 5000;
    window.clearTimeout(readTimer);
    readTimer = window.setTimeout(function () {
      readTimer = null;
      var seq = newestSeq();
      if (seq <= readSent || document.hidden) return;
      readSent = seq;
      post(room.dataset.readUrl, { seq: String(seq) }).catch(function () {
        readSent = 0; // the server is away (the stream reconnects); try again next time
      });
    }, Math.max(0, Math.min(1000, readDue - now)));
  }

  // Messages that arrived while the tab was hidden: counted in the title, and a
  // "new messages" divider goes before the first of them.
  var unseen = 0;
  function arrivedUnseen(message) {
    if (unseen === 0) {
      var old = document.getElementById("new-messages");
      if (old) old.remove();
      var divider = document.createElement("p");
      divider.className = "unread-divider";
      divider.id = "new-messages";
      divider.appendChild(document.createElement("span")).textContent = "New messages";
      message.before(divider);
    }
    unseen += 1;
    showUnreadInTitle(unseen);
  }

  var typists = [];
  var typingVersion = 0;
  function showTypists() {
    var line = document.getElementById("typing");
    if (!line) return;
    var others = typists.filter(function (name) {
      return name !== viewer;
    });
    if (others.length === 0) line.textContent = "";
    else if (others.length === 1) line.textContent = others[0] + " is typing…";
    else if (others.length === 2) line.textContent = others[0] + " and " + others[1] + " are typing…";
    else line.textContent = "several people are typing…";
  }

  function onTyping(event) {
    var state = JSON.parse(event.data);
    if (state.version < typingVersion) return; // an older frame that overtook a newer one
    typingVersion = state.version;
    typists = state.typists;
    showTypists();
  }

  // One frame carries a room's changes of the last moment (chat/presence.py); they
  // are said together, so that many people arriving at once is one announcement.
  function onPresence(event) {
    var cameOnline = [];
    var wentOffline = [];
    JSON.parse(event.data).forEach(function (change) {
      var label = document.querySelector('[data-presence="' + CSS.escape(change.user) + '"]');
      if (!label) return;
      var was = label.classList.contains("is-online");
      label.classList.toggle("is-online", change.online);
      label.textContent = change.online ? "online" : "offline";
      if (was !== change.online && change.user !== viewer) {
        (change.online ? cameOnline : wentOffline).push(change.user);
      }
    });
    var said = [];
    if (cameOnline.length) said.push(peopleText(cameOnline) + (cameOnline.length === 1 ? " is online" : " are online"));
    if (wentOffline.length) said.push(peopleText(wentOffline) + " went offline");
    var status = document.getElementById("presence-status");
    if (status && said.length) status.textContent = said.join(". ");
  }

  function peopleText(names) {
    if (names.length === 1) return names[0];
    if (names.length === 2) return names[0] + " and " + names[1];
    return names.length + " people";
  }

  if (room) {
    readSent = newestSeq(); // the server marked the room read when it rendered the page
    var typingLine = document.getElementById("typing");
    if (typingLine && typingLine.dataset.typists) onTyping({ data: typingLine.dataset.typists });

    document.addEventListener("htmx:sseOpen", function (event) {
      // A new connection (possibly to a restarted server): take its versions as they come.
      typingVersion = 0;
      event.detail.source.addEventListener("typing", onTyping);
      event.detail.source.addEventListener("presence", onPresence);
      // An edited message is put back fresh by static/app.js (its listener came
      // first): mark its mentions again.
      ["edit", "delete"].forEach(function (kind) {
        event.detail.source.addEventListener(kind, function () {
          highlightMentions(roomLog());
        });
      });
    });

    document.addEventListener("htmx:sseMessage", function (event) {
      var seq = seqOf(event.detail.lastEventId);
      var message = seq && document.getElementById("message-" + seq);
      if (!message) return;
      highlightMentions(message);
      var author = message.dataset.author;
      // Their message is here: they have stopped typing, whatever the next frame says.
      typists = typists.filter(function (name) {
        return name !== author;
      });
      showTypists();
      if (author === viewer) return;
      var key = room.dataset.liveRoom + ":" + seq;
      if (!document.hidden) {
        markSeen(key);
        markRead();
        return;
      }
      arrivedUnseen(message);
      var form = document.getElementById("notify-form");
      var everyMessage = form && form.dataset.notify === "on";
      if (everyMessage || message.classList.contains("mentions-me")) {
        var text = message.querySelector(".body");
        notifyOnce(
          key,
          author + " in " + room.dataset.roomName,
          text ? text.textContent.trim().slice(0, 140) : "",
          window.location.pathname + "#message-" + seq
        );
      }
    });

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) return;
      unseen = 0;
      showUnreadInTitle(0);
      markRead();
    });

    // Typing notices while there is text, one every 2 s at most. The time is kept here,
    // not on the textarea: each sent message brings a fresh composer, and a throttle of
    // its own pinged at once, within the server's one a second (429).
    var lastTypingNotice = 0;
    document.addEventListener("input", function (event) {
      var field = event.target;
      if (field.id !== "composer-body" || !field.dataset.typingUrl) return;
      if (field.value.trim() === "" || Date.now() - lastTypingNotice < 2000) return;
      lastTypingNotice = Date.now();
      post(field.dataset.typingUrl, {}).catch(function () {});
    });
  }

  // --- the rooms page: one stream for every room's counts --------------------------------

  function setBadge(link, selector, className, text) {
    var badge = link.querySelector(selector);
    if (!text) {
      if (badge) badge.remove();
      return;
    }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = className;
      badge.setAttribute(selector.slice(1, -1), "");
      link.appendChild(badge);
    }
    badge.textContent = text;
  }

  function totalUnread() {
    var total = 0;
    document.querySelectorAll("[data-room-id][data-unread]").forEach(function (link) {
      total += Number(link.dataset.unread);
    });
    return total;
  }

  function showCounts(state) {
    var link = document.querySelector('[data-room-link][data-room-id="' + Number(state.room) + '"]');
    if (!link) {
      refreshRoomLists(); // a room this page does not list yet: joined, added, a new conversation
      return;
    }
    if (state.unread > 0) link.dataset.unread = String(state.unread);
    else delete link.dataset.unread;
    setBadge(link, "[data-unread-badge]", "badge", state.unread > 0 ? state.unread + " unread" : "");
    setBadge(
      link,
      "[data-mention-badge]",
      "badge badge-mention",
      state.mentions > 0 ? state.mentions + (state.mentions === 1 ? " @mention" : " @mentions") : ""
    );
    // In a room, the title counts what arrived there unseen (above).
    if (!room) showUnreadInTitle(totalUnread());
  }

  function onUserEvent(kind, data) {
    if (kind === "open") {
      refreshRoomLists(); // (re)connected: rooms may have come or gone meanwhile
    } else if (kind === "unread") {
      showCounts(JSON.parse(data));
    } else if (kind === "notify") {
      var message = JSON.parse(data);
      // In its own room the room's stream says it (same key: once either way).
      if (!document.hidden || (room && Number(message.room) === Number(room.dataset.liveRoom))) return;
      notifyOnce(
        message.room + ":" + message.seq,
        message.title,
        message.body,
        "/rooms/" + Number(message.room) + "#message-" + Number(message.seq)
      );
    }
  }

  // The room lists of a page, fetched again from the rooms page (its lists are the same
  // partials) when rooms came or went. Focus on a room link stays on that room.
  var refreshTimer = null;
  function listAfter(root, headingId) {
    var heading = root.getElementById(headingId);
    var list = heading && heading.nextElementSibling;
    return list && list.matches("ul.room-list") ? list : null;
  }
  function refreshRoomLists() {
    var lists = document.querySelector("[data-user-stream]");
    if (!lists || !lists.dataset.roomsUrl) return;
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(function () {
      fetch(lists.dataset.roomsUrl, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html) showRoomLists(new DOMParser().parseFromString(html, "text/html"));
        })
        .catch(function () {});
    }, 200);
  }
  function showRoomLists(fresh) {
    var focused = document.activeElement && document.activeElement.closest("[data-room-link]");
    var focusedRoom = focused && focused.dataset.roomId;
    var nav = document.querySelector(".room-nav[data-current-room]");
    var pairs = nav
      ? [["room-nav-title", "your-rooms"], ["direct-nav-title", "direct-messages"]]
      : [["your-rooms", "your-rooms"], ["direct-messages", "direct-messages"]];
    pairs.forEach(function (pair) {
      var shown = listAfter(document, pair[0]);
      var latest = listAfter(fresh, pair[1]);
      if (!latest) {
        if (shown) shown.replaceChildren();
        return;
      }
      latest = document.importNode(latest, true);
      if (shown) {
        shown.replaceWith(latest);
      } else if (nav && pair[0] === "direct-nav-title") {
        // The first direct conversation: its heading and list go after the rooms.
        var heading = document.createElement("h2");
        heading.id = "direct-nav-title";
        heading.textContent = "Direct messages";
        var rooms = listAfter(document, "room-nav-title");
        if (rooms) rooms.after(heading, latest);
      } else if (!nav) {
        var before = document.getElementById(pair[0]).nextElementSibling;
        if (before && before.tagName === "P") before.replaceWith(latest);
      }
    });
    if (nav) {
      nav.querySelectorAll("[data-room-link]").forEach(function (link) {
        if (link.dataset.roomId === nav.dataset.currentRoom) link.setAttribute("aria-current", "page");
      });
    }
    if (focusedRoom) {
      var again = document.querySelector('[data-room-link][data-room-id="' + focusedRoom + '"]');
      if (again) again.focus();
    }
  }

  // One stream of your own per browser, not per tab: the tab holding a Web Lock opens it
  // and passes every event on to the others (BroadcastChannel); when it closes, another
  // tab takes the lock and opens it.
  function listenToUserStream(url) {
    var channel = window.BroadcastChannel ? new BroadcastChannel("chat.user-stream") : null;
    if (channel) {
      channel.onmessage = function (event) {
        onUserEvent(event.data.kind, event.data.data);
      };
    }
    function hold() {
      var source = new EventSource(url);
      ["open", "unread", "notify"].forEach(function (kind) {
        source.addEventListener(kind, function (event) {
          var data = event.data || "";
          onUserEvent(kind, data);
          if (channel) channel.postMessage({ kind: kind, data: data });
        });
      });
      return new Promise(function () {}); // held for as long as this tab lives
    }
    if (channel && navigator.locks) navigator.locks.request("chat.user-stream", hold);
    else hold();
  }

  var roomLists = document.querySelector("[data-user-stream]");
  if (roomLists && window.EventSource) listenToUserStream(roomLists.dataset.userStream);

  // The room's member list, fetched again when its stream says the members changed.
  function refreshMembers() {
    var list = document.getElementById("member-list");
    var aside = list && list.closest("[data-members-url]");
    if (!aside) return;
    fetch(aside.dataset.membersUrl, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.getElementById("member-list");
        var current = document.getElementById("member-list");
        if (!fresh || !current) return;
        var focus = document.activeElement;
        var label = current.contains(focus) ? focus.textContent : null;
        current.replaceWith(fresh);
        if (label !== null) {
          var same = Array.prototype.find.call(fresh.querySelectorAll("a, button"), function (each) {
            return each.textContent === label;
          });
          (same || document.getElementById("members-title")).focus();
        }
      })
      .catch(function () {});
  }
  if (room) {
    document.addEventListener("htmx:sseOpen", function (event) {
      event.detail.source.addEventListener("members", refreshMembers);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    highlightMentions(document);
    showPermissionButtons();
    if (room) {
      markRead();
    }
  });
})();
