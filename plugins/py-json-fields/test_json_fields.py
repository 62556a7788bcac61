"""Unit tests of json_fields.py under CPython: python3 -m unittest (run by build.sh)."""

import unittest

import json_fields


class ConfigTests(unittest.TestCase):
    def test_required_fields_are_read(self):
        """The required list comes back as a tuple, empty by default."""
        self.assertEqual(json_fields.parse_config('{"required": ["id", "amount"]}'), ("id", "amount"))
        self.assertEqual(json_fields.parse_config("{}"), ())

    def test_bad_configs_are_refused(self):
        """Non-JSON, non-objects, unknown keys and non-string fields are refused."""
        for text, fragment in [
            ("nope", "not JSON"),
            ("[1]", "must be a JSON object"),
            ('{"requird": []}', "unknown config key 'requird'"),
            ('{"required": "id"}', "list of field names"),
            ('{"required": [1]}', "list of field names"),
        ]:
            with self.assertRaises(json_fields.ConfigError) as caught:
                json_fields.parse_config(text)
            self.assertIn(fragment, str(caught.exception), text)


class JudgeTests(unittest.TestCase):
    REQUIRED = ("id", "amount")

    def test_complete_object_passes(self):
        """An object with every required field passes, extra fields allowed."""
        self.assertIsNone(json_fields.judge(b'{"id": 1, "amount": 2, "note": "x"}', self.REQUIRED))

    def test_missing_field_is_named(self):
        """The first missing field is named in the reason."""
        self.assertEqual(json_fields.judge(b'{"id": 1}', self.REQUIRED), 'missing required field "amount"')

    def test_non_objects_are_rejected(self):
        """Arrays, scalars, invalid JSON and invalid UTF-8 each get their own reason."""
        self.assertEqual(json_fields.judge(b"[1]", ()), "not a JSON object (found array)")
        self.assertEqual(json_fields.judge(b"null", ()), "not a JSON object (found null)")
        self.assertTrue(json_fields.judge(b"{oops", ()).startswith("not valid JSON"))
        self.assertEqual(json_fields.judge(b"\xff", ()), "not UTF-8 at byte 0")

    def test_deep_nesting_is_a_verdict(self):
        """A million open brackets are rejected with a reason, never raised."""
        self.assertEqual(
            json_fields.judge(b"[" * 1_000_000, ()), "not valid JSON: nested too deeply"
        )


if __name__ == "__main__":
    unittest.main()
