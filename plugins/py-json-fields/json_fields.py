"""The rules of the py-json-fields validator, free of any WebAssembly binding.

A message passes when it is UTF-8 JSON whose top level is an object holding
every field named in the config's ``required`` list. This module is plain
Python so that ``test_json_fields.py`` can run it under CPython; ``app.py``
wraps it in the ``validator`` world of ``wit/netlog-plugin.wit``.
"""

import json

# The config keys init accepts; anything else is refused, so a typo in the
# operator's TOML is found at start-up rather than silently ignored.
KEYS = ("required",)

# Longest excerpt of a JSON parser message kept in a rejection reason, in
# characters: the reason travels back to the producer in the 422 answer.
MAX_DETAIL_CHARS = 120


class ConfigError(ValueError):
    """The config given to init is unusable; the text is what init returns."""


def parse_config(text):
    """Reads the config JSON and returns the tuple of required field names."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config is not JSON: {e}") from e
    if not isinstance(config, dict):
        raise ConfigError("config must be a JSON object")
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r} (known: {', '.join(KEYS)})")
    required = config.get("required", [])
    if not isinstance(required, list) or not all(isinstance(f, str) for f in required):
        raise ConfigError('"required" must be a list of field names (strings)')
    return tuple(required)


def judge(payload, required):
    """Returns None when ``payload`` (bytes) passes, else the reason it fails."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        return f"not UTF-8 at byte {e.start}"
    except ValueError as e:
        return f"not valid JSON: {str(e)[:MAX_DETAIL_CHARS]}"
    except RecursionError:
        # Deep nesting ([[[[...) exhausts the parser's recursion: a verdict
        # on this message, not a trap that fails the whole batch.
        return "not valid JSON: nested too deeply"
    if not isinstance(doc, dict):
        return f"not a JSON object (found {type_name(doc)})"
    for field in required:
        if field not in doc:
            return f"missing required field {json.dumps(field)}"
    return None


def type_name(value):
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"
