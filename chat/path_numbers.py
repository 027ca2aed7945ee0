"""`{name:int}` in every route's path, the API's too: importing this module registers it,
and a route table must import it before it builds its routes (Starlette looks the
convertor up when a Route is made)."""

from __future__ import annotations

from starlette.convertors import IntegerConvertor, register_url_convertor


class PathNumber(IntegerConvertor):
    """`{name:int}` in a path: at most 18 digits (ids are checked against the columns'
    range where they are used). Starlette's own matches any number of digits, and
    converting 5,000 of them fails (Python refuses over 4,300), which was a 500; a
    longer number now matches no route, a 404."""

    regex = "[0-9]{1,18}"


register_url_convertor("int", PathNumber())
