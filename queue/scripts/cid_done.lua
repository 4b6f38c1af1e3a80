-- cid_done (carrier-id bucket): removes held receipts that were applied.
-- KEYS[1] held-receipts key, KEYS[2] held set, ARGV[1] carrier id (normalized),
-- ARGV[2..] the applied receipts (one occurrence removed each).
for i = 2, #ARGV do
  redis.call('LREM', KEYS[1], 1, ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
