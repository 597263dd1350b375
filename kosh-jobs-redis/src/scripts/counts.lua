-- counts: the number of jobs per state, then whether the queue is paused.
return {
  redis.call('ZCARD', ks('scheduled')),
  redis.call('ZCARD', ks('ready')),
  redis.call('ZCARD', ks('running')),
  redis.call('ZCARD', ks('completed')),
  redis.call('ZCARD', ks('failed')),
  redis.call('ZCARD', ks('cancelled')),
  redis.call('EXISTS', K_PAUSED),
}
