-- recover: recovers expired leases of one queue. ARGV: now, limit. Returns how many.
return recover(tonumber(ARGV[1]), ARGV[1], tonumber(ARGV[2]))
