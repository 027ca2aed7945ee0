"""Kept message HTML (chat/fragments.py): a page renders the messages it has not kept
from plain rows (Message.contents), the stream frames and POST replies from the model.
Both must give the same bytes, or a page and a live tab would show a message apart."""

from chat.db import in_one_trip
from chat.models import Message
from tests.test_attachments import png, send
from tests.test_message_changes import edit, message_path
from tests.test_replies import reply


async def test_a_message_renders_from_rows_exactly_as_from_the_model(app, people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await send(bob, room_id, [("plan.png", png(), "image/png"), ("notes.txt", b"hi", "text/plain")])
    await reply(alice, room_id, 1, "**nice** <b>plan</b> @bob")  # quotes files alone
    for person, emoji in ((bob, "👍"), (alice, "🎉"), (bob, "🎉")):
        await person.post(message_path(room_id, 2) + "/reactions", {"emoji": emoji})
    assert (await edit(alice, room_id, 2, "**nicer** @bob")).status_code == 303
    await bob.say(room_id, "gone soon")
    await reply(alice, room_id, 3, "to a deleted one")
    assert (await bob.post(message_path(room_id, 3) + "/delete", {})).status_code == 303

    async with app.state.db() as db:
        models = [await Message.find(db, room_id, seq, deleted=True) for seq in range(1, 5)]
    rows = await in_one_trip(app.state.db, lambda db: Message.contents(db, [m.id for m in models]))
    template = app.state.templates.get_template("messages/_content.html")
    assert sorted(row.id for row in rows) == [model.id for model in models]
    for model in models:
        row = next(row for row in rows if row.id == model.id)
        assert row.version == model.version
        assert template.render(message=row, csrf_field="") == template.render(
            message=model, csrf_field=""
        )
    quoting_files, quoting_deleted = (next(row for row in rows if row.seq == s) for s in (2, 4))
    assert quoting_files.quote.excerpt == "plan.png, notes.txt"
    assert quoting_files.reaction_groups == [("👍", ["bob"]), ("🎉", ["alice", "bob"])]
    assert quoting_deleted.quote.excerpt == ""
