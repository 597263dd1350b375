-- get: one job. ARGV: member. Returns field, value, ... (see `record`), or an empty list.
return record(ARGV[1]) or {}
