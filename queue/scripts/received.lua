-- received: ARGV[6] org number (To), [7] external number (From), [8] org id, [9] data JSON
-- Appends a message.received event and marks the conversation as started by the external party.
redis.call('SADD', base .. 'conv:' .. ARGV[6], ARGV[7])
emit('message.received', ARGV[8], ARGV[9])
return 1
