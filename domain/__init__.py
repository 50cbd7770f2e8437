"""Pure business logic: models, validation, rules, matching, pricing. No I/O, no Temporal, no DB."""
