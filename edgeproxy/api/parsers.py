"""The JSON body parser of the API: DRF's, with every unparsable body a 400 (``ParseError``).

Python's JSON decoder raises ``RecursionError`` (not ``ValueError``) for arrays or objects nested
deeper than the interpreter's recursion limit, so DRF's parser lets it through as a 500.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
