-- progress: stores a running job's progress. ARGV: lease, JSON. Returns 1 or 0.
if not redis.call('ZSCORE', K_LEASE, ARGV[1]) then return 0 end
col_set(K_PG, lease_job(ARGV[1]), ARGV[2])
return 1
