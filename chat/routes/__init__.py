"""The route table: every URL the app answers, in one place."""

from __future__ import annotations

from pathlib import Path

from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chat.api.routes import routes as api_routes
from chat.routes import (
    account,
    admin,
    admin_rooms,
    attachments,
    bots,
    direct,
    events,
    health,
    invites,
    live,
    members,
    messages,
    password_reset,
    room_settings,
    rooms,
    search,
    sessions,
    tokens,
    webhooks,
)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


class PathNumber(IntegerConvertor):
    """`{name:int}` in a path: at most 18 digits (ids are checked against the columns'
    range where they are used). Starlette's own matches any number of digits, and
    converting 5,000 of them fails (Python refuses over 4,300), which was a 500; a
    longer number now matches no route, a 404."""

    regex = "[0-9]{1,18}"


register_url_convertor("int", PathNumber())

routes = [
    Route("/", rooms.index, name="index"),
    Route("/healthz", health.healthz, name="healthz"),
    Route("/signup", sessions.signup_form, methods=["GET"], name="signup"),
    Route("/signup", sessions.signup, methods=["POST"]),
    Route("/login", sessions.login_form, methods=["GET"], name="login"),
    Route("/login", sessions.login, methods=["POST"]),
    Route("/logout", sessions.logout, methods=["POST"], name="logout"),
    Route("/account", account.page, methods=["GET"], name="account"),
    Route("/account/profile", account.profile, methods=["POST"], name="account_profile"),
    Route("/account/avatar", account.set_avatar, methods=["POST"], name="account_avatar"),
    Route(
        "/account/avatar/remove",
        account.remove_avatar,
        methods=["POST"],
        name="remove_avatar",
    ),
    Route("/avatars/{key}", account.avatar, methods=["GET"], name="avatar"),
    Route("/account/delete", account.delete, methods=["POST"], name="delete_account"),
    Route("/account/password", account.change_password, methods=["POST"], name="change_password"),
    Route(
        "/account/sessions/end-others",
        account.end_other_sessions,
        methods=["POST"],
        name="end_other_sessions",
    ),
    Route(
        "/account/sessions/{session}/end",
        account.end_session,
        methods=["POST"],
        name="end_session",
    ),
    Route("/account/tokens", tokens.page, methods=["GET"], name="tokens"),
    Route("/account/tokens", tokens.issue, methods=["POST"], name="issue_token"),
    Route(
        "/account/tokens/{token_id:int}/revoke",
        tokens.revoke,
        methods=["POST"],
        name="revoke_token",
    ),
    Route("/account/bots", bots.index, methods=["GET"], name="bots"),
    Route("/account/bots", bots.create, methods=["POST"], name="create_bot"),
    Route("/account/bots/{bot_id:int}", bots.show, methods=["GET"], name="bot"),
    Route(
        "/account/bots/{bot_id:int}/tokens",
        bots.issue_token,
        methods=["POST"],
        name="issue_bot_token",
    ),
    Route(
        "/account/bots/{bot_id:int}/tokens/{token_id:int}/revoke",
        bots.revoke_token,
        methods=["POST"],
        name="revoke_bot_token",
    ),
    Route(
        "/account/bots/{bot_id:int}/outgoing",
        bots.set_outgoing,
        methods=["POST"],
        name="set_bot_outgoing",
    ),
    Route(
        "/account/bots/{bot_id:int}/rooms",
        bots.add_to_room,
        methods=["POST"],
        name="add_bot_to_room",
    ),
    Route("/reset/{token}", password_reset.form, methods=["GET"], name="password_reset"),
    Route("/reset/{token}", password_reset.reset, methods=["POST"]),
    Route("/admin", admin.page, methods=["GET"], name="admin"),
    Route("/admin/rooms", admin_rooms.index, methods=["GET"], name="admin_rooms"),
    Route(
        "/admin/rooms/{room_id:int}/archive",
        admin_rooms.archive,
        methods=["POST"],
        name="admin_archive_room",
    ),
    Route(
        "/admin/rooms/{room_id:int}/delete",
        admin_rooms.confirm_delete,
        methods=["GET"],
        name="admin_delete_room",
    ),
    Route("/admin/rooms/{room_id:int}/delete", admin_rooms.delete, methods=["POST"]),
    Route(
        "/admin/rooms/{room_id:int}/owner",
        admin_rooms.make_owner,
        methods=["POST"],
        name="admin_room_owner",
    ),
    Route("/admin/signup", admin.set_signup_policy, methods=["POST"], name="admin_signup"),
    Route(
        "/admin/users/{user_id:int}/deactivate",
        admin.deactivate,
        methods=["POST"],
        name="admin_deactivate",
    ),
    Route(
        "/admin/users/{user_id:int}/reactivate",
        admin.reactivate,
        methods=["POST"],
        name="admin_reactivate",
    ),
    Route(
        "/admin/users/{user_id:int}/reset-password",
        admin.reset_password,
        methods=["POST"],
        name="admin_reset_password",
    ),
    Route("/rooms", rooms.to_index, methods=["GET"], name="rooms"),
    Route("/rooms", rooms.create, methods=["POST"], name="create_room"),
    Route("/rooms/read", room_settings.mark_all_read, methods=["POST"], name="mark_all_read"),
    Route("/rooms/archived", room_settings.archived_rooms, methods=["GET"], name="archived_rooms"),
    Route("/rooms/{room_id:int}", rooms.show, name="room"),
    Route(
        "/rooms/{room_id:int}/settings",
        room_settings.page,
        methods=["GET"],
        name="room_settings",
    ),
    Route(
        "/rooms/{room_id:int}/settings/name",
        room_settings.rename,
        methods=["POST"],
        name="rename_room",
    ),
    Route(
        "/rooms/{room_id:int}/settings/topic",
        room_settings.set_topic,
        methods=["POST"],
        name="room_topic",
    ),
    Route(
        "/rooms/{room_id:int}/settings/archive",
        room_settings.archive,
        methods=["POST"],
        name="archive_room",
    ),
    Route("/rooms/{room_id:int}/invites", invites.create, methods=["POST"], name="create_invite"),
    Route(
        "/rooms/{room_id:int}/invites/{invite_id:int}/revoke",
        invites.revoke,
        methods=["POST"],
        name="revoke_invite",
    ),
    Route("/invites/{token}", invites.show, methods=["GET"], name="invite"),
    Route("/invites/{token}", invites.accept, methods=["POST"]),
    Route(
        "/rooms/{room_id:int}/export",
        room_settings.export_room,
        methods=["GET"],
        name="export_room",
    ),
    Route("/rooms/{room_id:int}/mute", room_settings.mute, methods=["POST"], name="mute_room"),
    Route("/rooms/{room_id:int}/join", members.join, methods=["POST"], name="join_room"),
    Route(
        "/rooms/{room_id:int}/leave", members.confirm_leave, methods=["GET"], name="confirm_leave"
    ),
    Route("/rooms/{room_id:int}/leave", members.leave, methods=["POST"], name="leave_room"),
    Route("/rooms/{room_id:int}/members", members.add_member, methods=["POST"], name="add_member"),
    Route("/rooms/{room_id:int}/members", members.member_list, methods=["GET"], name="member_list"),
    Route(
        "/rooms/{room_id:int}/members/{user_id:int}/owner",
        members.make_owner,
        methods=["POST"],
        name="make_owner",
    ),
    Route(
        "/rooms/{room_id:int}/members/{user_id:int}/remove",
        members.confirm_remove_member,
        methods=["GET"],
        name="confirm_remove_member",
    ),
    Route(
        "/rooms/{room_id:int}/members/{user_id:int}/remove",
        members.remove_member,
        methods=["POST"],
        name="remove_member",
    ),
    Route("/rooms/{room_id:int}/messages", messages.create, methods=["POST"], name="post_message"),
    Route(
        "/rooms/{room_id:int}/messages", messages.history, methods=["GET"], name="message_history"
    ),
    Route(
        "/rooms/{room_id:int}/messages/{seq:int}/actions",
        messages.actions,
        methods=["GET"],
        name="message_actions",
    ),
    Route(
        "/rooms/{room_id:int}/messages/{seq:int}/edit",
        messages.edit_form,
        methods=["GET"],
        name="edit_message_form",
    ),
    Route(
        "/rooms/{room_id:int}/messages/{seq:int}",
        messages.show,
        methods=["GET"],
        name="message",
    ),
    Route(
        "/rooms/{room_id:int}/messages/{seq:int}",
        messages.edit,
        methods=["POST"],
        name="edit_message",
    ),
    Route(
        "/rooms/{room_id:int}/messages/{seq:int}/delete",
        messages.delete,
        methods=["POST"],
        name="delete_message",
    ),
    Route(
        "/rooms/{room_id:int}/messages/{seq:int}/reactions",
        messages.react,
        methods=["POST"],
        name="react_to_message",
    ),
    Route(
        "/rooms/{room_id:int}/attachments/{key}",
        attachments.show,
        methods=["GET"],
        name="attachment",
    ),
    Route("/rooms/{room_id:int}/events", events.stream, name="room_events"),
    Route("/rooms/{room_id:int}/webhooks", webhooks.page, methods=["GET"], name="room_webhooks"),
    Route(
        "/rooms/{room_id:int}/webhooks",
        webhooks.create,
        methods=["POST"],
        name="create_webhook",
    ),
    Route(
        "/rooms/{room_id:int}/webhooks/{hook_id:int}/remove",
        webhooks.remove,
        methods=["POST"],
        name="remove_webhook",
    ),
    Route("/rooms/{room_id:int}/typing", live.typing, methods=["POST"], name="typing"),
    Route("/rooms/{room_id:int}/read", live.mark_read, methods=["POST"], name="mark_read"),
    Route("/rooms/{room_id:int}/notify", live.notify, methods=["POST"], name="room_notify"),
    Route("/direct", direct.find, name="find_direct"),
    Route("/direct/{username}", direct.page, name="direct"),
    Route(
        "/direct/{username}/messages",
        direct.post_message,
        methods=["POST"],
        name="post_direct",
    ),
    Route("/events", live.user_events, name="user_events"),
    Route("/search", search.page, name="search"),
    *api_routes,
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]
