package redisstore

import "github.com/redis/go-redis/v9"

// The scripts run atomically on the Redis server. Times come from the
// callers' clocks (the pools' clocks, in nanoseconds or milliseconds since
// the epoch), so that replicas on one virtual clock agree in simulations;
// TTLs only collect what nobody needs any more.

// saveScript stores a member's state by the rules of failover.Store.Save
// (a cooldown for its window, an active state for an hour, a disable until
// it changes), gives it the next version and publishes it; when the stored state
// outranks it, it publishes the stored state instead, as the answer to the
// saving pool.
//
// KEYS: 1 record, 2 lease, 3 version counter, 4 set of members with a record.
// ARGV: 1 member, 2 state, 3 lane, 4 reason, 5 level, 6 until (ns; 0 none),
// 7 manual (1/0), 8 now (ns), 9 channel, 10 origin, 11 seq.
var saveScript = redis.NewScript(`
local function later(a, b) -- decimal strings without leading zeros
  if #a ~= #b then return #a > #b end
  return a > b
end
local function publish(state, lane, reason, level, untilns, manual, version)
  redis.call('PUBLISH', ARGV[9], cjson.encode({m = ARGV[1], s = state, l = lane, r = reason, n = level,
    u = untilns, x = manual, v = version, o = ARGV[10], q = ARGV[11]}))
end
redis.call('DEL', KEYS[2])
local state, untilns, manual = ARGV[2], ARGV[6], ARGV[7]
local old = redis.call('HMGET', KEYS[1], 'state', 'lane', 'reason', 'level', 'until', 'manual', 'version')
local outranked = (old[1] == 'disabled' and old[6] == '1' and manual ~= '1') or
  (state == 'cooling_down' and (old[1] == 'disabled' or (old[1] == 'cooling_down' and not later(untilns, old[5]))))
local ttl = 0
if not outranked and state == 'cooling_down' then
  ttl = math.ceil((tonumber(untilns) - tonumber(ARGV[8])) / 1000000)
  if ttl <= 0 then return 0 end -- a window already over
end
if outranked then
  publish(old[1], old[2], old[3], old[4], old[5], old[6], old[7])
  return 0
end
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if v <= last then v = last + 1 end
local version = string.format('%.0f', v)
redis.call('SET', KEYS[3], version)
-- An active state is kept for an hour too, so that a replica that missed
-- its PUBLISH (while it resubscribed) reads it at its resync.
if state == 'active' then ttl = 3600000 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', state, 'lane', ARGV[3], 'reason', ARGV[4], 'level', ARGV[5], 'until', untilns, 'manual', manual, 'version', version)
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('SADD', KEYS[4], ARGV[1])
publish(state, ARGV[3], ARGV[4], ARGV[5], untilns, manual, version)
return 1
`)

// leaseScript claims a member's probe for a holder, unless another holder's
// lease runs at now.
//
// KEYS: 1 lease. ARGV: 1 holder, 2 now (ms), 3 lease time (ms).
// Returns {1, end} when the holder has the lease, {0, end} otherwise.
var leaseScript = redis.NewScript(`
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local ends = tonumber(string.sub(cur, sep + 1))
  if string.sub(cur, 1, sep - 1) ~= ARGV[1] and ends > now then return {0, ends} end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. string.format('%.0f', now + ttl), 'PX', ttl)
return {1, now + ttl}
`)

// takeScript reserves a call in a member's sliding-minute windows: at most
// rpm calls and tpm tokens started in any 60 s (an entry started at s
// counts while s + 60000 > now); and in its day: at most rpd calls and tpd
// tokens started in the calendar day that ends at day end. The caller
// names the day's key by its end, so that every replica counts the same
// day; the key lives an hour past the end, for replicas whose clocks lag.
//
// KEYS: 1 call starts (zset), 2 token entries (zset), 3 token sum,
// 4 entry sequence, 5 the day's counts (hash: r requests, t tokens).
// ARGV: 1 now (ms), 2 rpm, 3 tpm, 4 tokens, 5 rpd, 6 tpd, 7 day end (ms;
// 0 without rpd and tpd).
// Returns {1, now} when reserved, {0, when it may fit} otherwise, {0, 0}
// when it never fits.
var takeScript = redis.NewScript(`
local now, rpm, tpm, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rpd, tpd, dayend = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local daily = rpd > 0 or tpd > 0
if tpd > 0 and n > tpd then return {0, 0} end
local cutoff = now - 60000
local at = now
if daily then
  local d = redis.call('HMGET', KEYS[5], 'r', 't')
  local r, t = tonumber(d[1] or '0'), tonumber(d[2] or '0')
  if (rpd > 0 and r >= rpd) or (tpd > 0 and n > 0 and t + n > tpd) then at = math.max(at, dayend) end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  local c = redis.call('ZCARD', KEYS[1])
  if c >= rpm then
    local e = redis.call('ZRANGE', KEYS[1], c - rpm, c - rpm, 'WITHSCORES')
    at = math.max(at, tonumber(e[2]) + 60000)
  end
end
local sum = 0
local counted = tpm > 0 and n > 0
if counted then
  if n > tpm then return {0, 0} end
  sum = tonumber(redis.call('GET', KEYS[3]) or '0')
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  if #old > 0 then
    for _, m in ipairs(old) do sum = sum - tonumber(string.match(m, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
    if sum < 0 then sum = 0 end
    redis.call('SET', KEYS[3], sum, 'PX', 60000)
  end
  if sum + n > tpm then
    -- Recount before refusing: the sum outlives the entries when the set's
    -- TTL ends first, and then holds tokens no entry carries any more.
    local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local exact = 0
    for i = 1, #all, 2 do exact = exact + tonumber(string.match(all[i], ':(%d+)$')) end
    if exact ~= sum then
      sum = exact
      redis.call('SET', KEYS[3], sum, 'PX', 60000)
    end
    local s = sum
    for i = 1, #all, 2 do
      if s + n <= tpm then break end
      s = s - tonumber(string.match(all[i], ':(%d+)$'))
      at = math.max(at, tonumber(all[i + 1]) + 60000)
    end
  end
end
if at > now then return {0, at} end
local id = string.format('%.0f', now) .. ':' .. redis.call('INCR', KEYS[4])
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], 60000)
end
if counted then
  redis.call('ZADD', KEYS[2], now, id .. ':' .. n)
  redis.call('PEXPIRE', KEYS[2], 60000)
  redis.call('SET', KEYS[3], sum + n, 'PX', 60000)
end
if daily then
  redis.call('HINCRBY', KEYS[5], 'r', 1)
  if n > 0 then redis.call('HINCRBY', KEYS[5], 't', n) end
  redis.call('PEXPIRE', KEYS[5], math.max(dayend - now, 0) + 3600000)
end
return {1, now}
`)
