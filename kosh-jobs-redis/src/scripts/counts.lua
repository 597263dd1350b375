-- counts: the number of jobs per state, then whether the queue is paused.
local running = redis.call('ZCARD', K_LEASE)
if redis.call('ZSCORE', K_LEASE, SENT) then running = running - 1 end
return {
  redis.call('ZCARD', K_SCHED),
  redis.call('ZCARD', K_READY),
  running,
  redis.call('ZCARD', ks('completed')),
  redis.call('ZCARD', ks('failed')),
  redis.call('ZCARD', ks('cancelled')),
  redis.call('EXISTS', K_PAUSED),
}
