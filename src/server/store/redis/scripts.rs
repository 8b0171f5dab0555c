//! The Lua scripts that decide, atomically inside Redis, what must be decided in one
//! place for the whole cluster: channel-name conflicts and the cap, the next number
//! of a channel, repeated sends, and who holds a name.

/// KEYS: channels, creation order, events, looks. ARGV: channel key, channel JSON,
/// look key, most channels. Returns 1 and the JSON; 0 and the JSON of the channel
/// that has the key or the look; or 2 when there are as many channels as there
/// may be.
pub const CREATE_CHANNEL: &str = r"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
local twin = redis.call('HGET', KEYS[4], ARGV[3])
local twin_channel = twin and redis.call('HGET', KEYS[1], twin)
if twin_channel then return {0, twin_channel} end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return {2, ''} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'channel', ARGV[1])
return {1, ARGV[2]}
";

/// ARGV: stream length, seconds to remember a send, then per message its channel key,
/// author, text, time and client id. Returns per message: 1, the new number and the
/// channel's name; 2, the number it was stored under before, and the name; or 0 when
/// the channel does not exist. The name comes back with the numbers so publishing
/// needs no second round trip.
pub const APPEND: &str = r"
local out = {}
for i = 3, #ARGV, 5 do
  local key, author, text, sent_at, cid = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local channel = redis.call('HGET', KEYS[1], key)
  if not channel then
    out[#out+1] = {0, 0, ''}
  else
    local name = cjson.decode(channel)['name']
    local sent = 'hearth:sent:' .. key .. ':' .. #author .. ':' .. author .. cid
    local prior = redis.call('GET', sent)
    if prior then
      out[#out+1] = {2, tonumber(prior), name}
    else
      local log, counter = 'hearth:log:' .. key, 'hearth:seq:' .. key
      local seq = redis.call('INCR', counter)
      -- Never behind the stream: a counter lost (evicted, or not yet on disk when
      -- Redis stopped) would reuse numbers, and the add below would fail for ever.
      local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
      if top then
        local newest = tonumber(string.match(top[1], '^(%d+)'))
        if seq <= newest then
          seq = newest + 1
          redis.call('SET', counter, seq)
        end
      end
      redis.call('XADD', log, 'MAXLEN', ARGV[1], seq .. '-1',
        'a', author, 't', text, 's', sent_at, 'c', cid)
      redis.call('SET', sent, seq, 'EX', ARGV[2])
      out[#out+1] = {1, seq, name}
    end
  end
end
return out
";

/// Names are kept as "token hash|last use|name as held". KEYS: names, releases.
/// ARGV: name key, name, token hash, now, idle expiry. Returns 1, the name as held
/// and the token hash of the holder it was taken from (empty if none), or 0. A
/// name taken over is announced as given up by its holder, so every node lets go
/// of their tabs. (The same decision as `decide_claim`.)
pub const CLAIM_NAME: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local name = ARGV[2]
local displaced = ''
if current then
  local hash, seen, held = string.match(current, '^([^|]*)|([^|]*)|(.*)$')
  if hash == ARGV[3] then
    name = held
  elseif tonumber(ARGV[4]) - tonumber(seen) < tonumber(ARGV[5]) then
    return {0, held, ''}
  else
    displaced = hash
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'released', ARGV[1], 'holder', hash)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '|' .. ARGV[4] .. '|' .. name)
return {1, name, displaced}
";

pub const HOLDS_NAME: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local hash, seen, held = string.match(current, '^([^|]*)|([^|]*)|(.*)$')
if hash ~= ARGV[2] then return false end
if tonumber(ARGV[3]) - tonumber(seen) >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], ARGV[1], hash .. '|' .. ARGV[3] .. '|' .. held)
end
return held
";

/// KEYS: names, releases. ARGV: name key, token hash. Every node hears of the
/// release (`read_changes`), to let go of the holder's tabs connected to it.
pub const RELEASE_NAME: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or string.sub(current, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'released', ARGV[1], 'holder', ARGV[2])
return 1
";
