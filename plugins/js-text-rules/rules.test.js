// Unit tests of rules.js under Node: node --test (run by build.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, judge } from "./rules.js";

const bytes = (text) => new TextEncoder().encode(text);

/// An empty config accepts anything, even bytes that are not UTF-8.
test("empty config accepts everything", () => {
  const rules = configure("{}");
  assert.equal(judge(bytes("anything"), rules), null);
  assert.equal(judge(new Uint8Array([0xff]), rules), null);
});

/// A payload over max_bytes is rejected with both sizes named.
test("max_bytes bounds the payload", () => {
  const rules = configure('{"max_bytes": 4}');
  assert.equal(judge(bytes("abcd"), rules), null);
  assert.equal(judge(bytes("abcde"), rules), "5 bytes is over the limit of 4");
});

/// The pattern must match; a miss quotes the pattern; non-UTF-8 is refused.
test("pattern must match", () => {
  const rules = configure('{"pattern": "^[a-z]+-\\\\d+$", "flags": "g"}');
  assert.equal(judge(bytes("sensor-12"), rules), null);
  assert.equal(judge(bytes("sensor-13"), rules), null, "a global flag keeps no state");
  assert.equal(judge(bytes("Sensor"), rules), "does not match /^[a-z]+-\\d+$/");
  assert.equal(judge(new Uint8Array([0xc3]), rules), "not UTF-8 text");
});

/// Bad configs are refused with the key named.
test("bad configs are refused", () => {
  for (const [text, fragment] of [
    ["nope", "config is not JSON"],
    ["[]", "must be a JSON object"],
    ['{"max": 1}', 'unknown config key "max"'],
    ['{"max_bytes": -1}', '"max_bytes" must be'],
    ['{"pattern": "("}', '"pattern" is not a valid regular expression'],
    ['{"pattern": 3}', '"pattern" must be a string'],
  ]) {
    assert.throws(() => configure(text), (e) => e.message.includes(fragment), text);
  }
});
