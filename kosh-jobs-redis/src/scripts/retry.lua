-- retry: puts a failed or cancelled job back to ready (run_at = now) with a fresh count of
-- attempts. ARGV: now, member. Returns {0} not found, {1} retried, {2, state} not retryable,
-- {3, job ref} unique key held by another live job.
return retry_job(ARGV[2], ARGV[1])
