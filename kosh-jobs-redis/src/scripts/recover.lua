-- recover: recovers expired leases of one queue. ARGV: now, limit. Returns how many.
return recover(ARGV[1], ARGV[2])
