-- cancel: ARGV: now, member. Returns {0} not found, {1} cancelled, {2, state} already final.
return cancel_job(ARGV[2], ARGV[1])
