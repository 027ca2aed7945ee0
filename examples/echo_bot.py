"""Answers "@echo TEXT" with TEXT. Usage: python echo_bot.py CHAT_URL TOKEN ROOM_ID"""

import json
import sys
import time

import httpx

url, token, room = sys.argv[1:4]
chat = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
last, kind = str(chat.get(f"/api/v1/rooms/{room}").json()["room"]["last_seq"]), ""
while True:
    try:
        with chat.stream("GET", f"/api/v1/rooms/{room}/events?after={last}") as events:
            for line in events.iter_lines():
                field, _, value = line.partition(": ")
                if field == "id":
                    last = value
                elif field == "event":
                    kind = value
                elif field == "data" and kind == "message":
                    message = json.loads(value)
                    if message["body"].startswith("@echo ") and not message["author_is_bot"]:
                        reply = {"body": message["body"][6:], "reply_to": message["seq"]}
                        chat.post(f"/api/v1/rooms/{room}/messages", json=reply)
    except httpx.TransportError:  # the server went away: resume after the last id seen
        time.sleep(1)
