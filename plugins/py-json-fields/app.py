# netlog-world: validator
"""py-json-fields: a netlog validator written in Python (componentize-py).

Targets the ``validator`` world of ``wit/netlog-plugin.wit``. ``init`` reads
``{"required": [...]}`` and ``validate`` gives one verdict per message, in
order, using the rules of ``json_fields.py``.
"""

import wit_world
from wit_world.exports import validation
from wit_world.imports import host
from componentize_py_types import Err

import json_fields

# The required fields init configured; empty until then.
_required = ()


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        global _required
        try:
            _required = json_fields.parse_config(config)
        except json_fields.ConfigError as e:
            raise Err(str(e))
        host.log(host.Level.DEBUG, f"requiring fields {list(_required)}")


class Validation(wit_world.exports.Validation):
    def validate(self, topic: str, batch: list) -> list:
        verdicts = []
        for message in batch:
            reason = json_fields.judge(message.payload, _required)
            if reason is None:
                verdicts.append(validation.Verdict_Accept())
            else:
                verdicts.append(validation.Verdict_Reject(reason))
        return verdicts
