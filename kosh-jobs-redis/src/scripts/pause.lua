-- pause: ARGV: '1' to pause, '0' to resume (which wakes waiters if jobs are ready).
if ARGV[1] == '1' then
  redis.call('SET', K_PAUSED, '1')
  return 1
end
redis.call('DEL', K_PAUSED)
wake(ready_count() + redis.call('ZCARD', K_GALL))
if redis.call('ZCARD', K_SCHED) > 0 then wake(1) end
return 0
