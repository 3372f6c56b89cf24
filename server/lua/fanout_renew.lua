-- Renew a fan-out lease and record progress within a round (so a retry resumes there).
-- KEYS: folease, fo. ARGV: token, lease_ms, position ("<last seq of the round>:<ZSCAN cursor>").
-- Returns 1, or 0 when the lease is no longer ours (the worker must stop: another one took over).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'pos', ARGV[3])
return 1
