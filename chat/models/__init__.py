"""Tables and the behaviour that belongs to them, one module per resource.

Authorization is done by scoping: a private room is only ever loaded through the
viewer's membership, so a room you may not see is simply not found.

Importing this package defines every table (in dependency order) and the search index
that the database keeps beside `messages`.
"""

from chat.models.admin import (
    COMMAND_LINE,
    AdminEvent,
    InstanceSetting,
    PasswordReset,
    SignupPolicy,
    signup_policy,
)
from chat.models.attachments import THUMBNAIL_BOX, Attachment, size_text
from chat.models.base import MAX_ID, Base, UTCDateTime, utcnow
from chat.models.bots import Bot, DeliveryState, IncomingWebhook, WebhookDelivery
from chat.models.invites import Invite, InviteState
from chat.models.listing import listed_for
from chat.models.memberships import Membership, Role
from chat.models.message_rows import (
    QUOTE_CHARS,
    MessageContent,
    MessageHead,
    MessageVersion,
    Quote,
    excerpt_of,
    group_reactions,
)
from chat.models.messages import (
    HAS_LINK_SQL,
    Mention,
    Message,
    MessageGone,
    NotYours,
    Reaction,
)
from chat.models.rooms import (
    LastOwner,
    Listed,
    Member,
    NotDirectable,
    Room,
    RoomKind,
)
from chat.models.search_index import SEARCH_INDEX_DDL, SEARCH_INDEX_OBJECTS
from chat.models.sessions import AuthSession
from chat.models.tokens import ApiToken
from chat.models.users import User

__all__ = [
    "COMMAND_LINE",
    "HAS_LINK_SQL",
    "MAX_ID",
    "QUOTE_CHARS",
    "SEARCH_INDEX_DDL",
    "SEARCH_INDEX_OBJECTS",
    "THUMBNAIL_BOX",
    "AdminEvent",
    "ApiToken",
    "Attachment",
    "AuthSession",
    "Base",
    "Bot",
    "DeliveryState",
    "IncomingWebhook",
    "InstanceSetting",
    "Invite",
    "InviteState",
    "LastOwner",
    "Listed",
    "Member",
    "Membership",
    "Mention",
    "Message",
    "MessageContent",
    "MessageGone",
    "MessageHead",
    "MessageVersion",
    "NotDirectable",
    "NotYours",
    "PasswordReset",
    "Quote",
    "Reaction",
    "Role",
    "Room",
    "RoomKind",
    "SignupPolicy",
    "UTCDateTime",
    "User",
    "WebhookDelivery",
    "excerpt_of",
    "group_reactions",
    "listed_for",
    "signup_policy",
    "size_text",
    "utcnow",
]
