// The rules of the js-text-rules validator, with no WebAssembly binding, so
// that `node --test` runs them as they are (see rules.test.js). plugin.js
// wraps them in the `validator` world of wit/netlog-plugin.wit.
//
// A message passes when it is UTF-8 text of at most `max_bytes` bytes that
// matches the regular expression `pattern` (JavaScript syntax, tested with
// RegExp.prototype.test, so anchor it with ^ and $ to match the whole text).

/** The config keys `configure` accepts. */
export const KEYS = ["max_bytes", "pattern", "flags"];

/** Longest pattern text quoted back in a rejection reason, in characters. */
export const MAX_QUOTED_PATTERN = 80;

/**
 * Reads the config JSON that `init` receives. Returns the rules, or throws
 * an Error whose message is what `init` answers.
 */
export function configure(text) {
  let config;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw new Error(`config is not JSON: ${e.message}`);
  }
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new Error("config must be a JSON object");
  }
  for (const key of Object.keys(config)) {
    if (!KEYS.includes(key)) {
      throw new Error(`unknown config key "${key}" (known: ${KEYS.join(", ")})`);
    }
  }
  const rules = { maxBytes: null, pattern: null, source: null };
  if (config.max_bytes !== undefined) {
    if (!Number.isSafeInteger(config.max_bytes) || config.max_bytes < 0) {
      throw new Error('"max_bytes" must be a non-negative integer');
    }
    rules.maxBytes = config.max_bytes;
  }
  if (config.flags !== undefined && typeof config.flags !== "string") {
    throw new Error('"flags" must be a string of RegExp flags');
  }
  if (config.pattern !== undefined) {
    if (typeof config.pattern !== "string") {
      throw new Error('"pattern" must be a string');
    }
    try {
      rules.pattern = new RegExp(config.pattern, config.flags ?? "");
    } catch (e) {
      throw new Error(`"pattern" is not a valid regular expression: ${e.message}`);
    }
    rules.source = config.pattern;
  }
  return rules;
}

/**
 * Judges one payload (a Uint8Array). Returns null when it passes, else the
 * reason it fails.
 */
export function judge(payload, rules) {
  if (rules.maxBytes !== null && payload.length > rules.maxBytes) {
    return `${payload.length} bytes is over the limit of ${rules.maxBytes}`;
  }
  if (rules.pattern === null) {
    return null;
  }
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return "not UTF-8 text";
  }
  // A global or sticky RegExp remembers where it stopped; start afresh.
  rules.pattern.lastIndex = 0;
  if (!rules.pattern.test(text)) {
    return `does not match /${quote(rules.source)}/`;
  }
  return null;
}

/** The pattern as quoted in a reason, cut at MAX_QUOTED_PATTERN characters. */
function quote(source) {
  return source.length > MAX_QUOTED_PATTERN
    ? `${source.slice(0, MAX_QUOTED_PATTERN)}…`
    : source;
}
