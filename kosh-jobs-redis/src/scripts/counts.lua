-- counts: the number of jobs per state, then whether the queue is paused.
return {
  redis.call('ZCARD', K_SCHED),
  redis.call('ZCARD', K_READY),
  redis.call('ZCARD', K_LEASE),
  redis.call('ZCARD', ks('completed')),
  redis.call('ZCARD', ks('failed')),
  redis.call('ZCARD', ks('cancelled')),
  redis.call('EXISTS', K_PAUSED),
}
