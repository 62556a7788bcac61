// netlog-world: validator
// js-text-rules: a netlog validator written in JavaScript (componentize-js).
//
// Targets the `validator` world of wit/netlog-plugin.wit: `init` reads
// {"max_bytes": N, "pattern": "...", "flags": "..."}, `validation.validate`
// answers one verdict per message, in order, by the rules of rules.js.
// It imports nothing from the host, so the build can leave out every WASI
// feature the broker does not provide (see build.sh: --disable http).

import { configure, judge } from "./rules.js";

let rules = configure("{}");

/**
 * Called once per topic with the plugin's config. componentize-js maps a
 * thrown value to the `err` case of init's result<_, string>, so what is
 * thrown must be the string itself: an Error object would abort the
 * instance instead of refusing the config.
 */
export function init(config) {
  try {
    rules = configure(config);
  } catch (e) {
    throw String(e.message ?? e);
  }
}

export const validation = {
  /** One verdict per message of the batch, in order. */
  validate(_topic, batch) {
    return batch.map(({ payload }) => {
      const reason = judge(payload, rules);
      return reason === null ? { tag: "accept" } : { tag: "reject", val: reason };
    });
  },
};
