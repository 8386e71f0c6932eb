"""Input fields shared by the API's validators."""

import re

from rest_framework import serializers

_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")


class StrictCharField(serializers.CharField):
    """A string and only a string: numbers, lists and objects are a 400, not coerced."""

    default_error_messages = {"not_a_string": "must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false and only those: 0, 1 and strings are a 400, not coerced."""

    default_error_messages = {"not_a_boolean": "must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


def has_space_or_control(value: str) -> bool:
    return bool(_CONTROL_OR_SPACE.search(value))
