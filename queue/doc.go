// Package queue keeps smsgate's outbound messages in Redis: one FIFO list per
// sender number, scheduled by the number's next-allowed time, with leases,
// retries, expiry, idempotency, receipts and the event stream that feeds the
// webhook. Every change to a sender's queue or a message is one Lua script
// (scripts/*.lua, embedded) that touches the keys of one bucket only, so it
// runs on one Redis Cluster slot; scripts take the time from Redis TIME so all
// daemons share one clock. Opt-out sets, STOPALL marks and idempotency-key
// bindings are plain commands; conversation marks are set and cleared inside
// the enqueue, received and finish scripts. The carrier-id index is written
// and first read with plain commands; a miss, and receipts held for a later
// ack, go through the carrier-id bucket's own scripts (cid_*.lua,
// held_sweep.lua), each on one {c<N>} slot.
//
// # Buckets and ids
//
// A sender number belongs to bucket crc32(number) mod Buckets. Every key of a
// bucket starts with "<prefix>{b<N>}:", the hash tag {b<N>} pinning the slot.
// A message lives in its sender's bucket, and its id says which:
// NewMessageID appends three base-32 characters naming the bucket to a
// message.NewID, so Get needs nothing but the id.
//
// # Key layout (base = "<prefix>{b<N>}:")
//
//	base+"ready"            ZSET  sender number -> time (µs) it may send next; holds a sender
//	                              iff it has queued messages and room in its in-flight window
//	base+"inflight"         ZSET  message id -> lease expiry (µs)
//	base+"q:"+from          LIST  queued message ids, FIFO (the leased one is popped; Retry,
//	                              Requeue and Reap push it back to the head)
//	base+"s:"+from          HASH  iv (µs per segment), nx (next-allowed µs), nf (in flight),
//	                              mx (about the latest expiry queued, µs, "x": none; moves in
//	                              steps of a minute), dq (ids in q:+from whose message Reap
//	                              already ended: the depth is LLEN minus dq)
//	base+"xq"               ZSET  message id -> expiry (µs) of queued messages that expire before
//	                              one ahead of them (their field xi is "1"); Reap ends them expired
//	base+"m:"+id            HASH  body (message JSON), st (status), att (attempts), exp (µs, 0 none),
//	                              segs, org, ref (client_ref), from, dup ("1": possible duplicate),
//	                              nh (history length), h1…h<nh> (history entries, one field per
//	                              status change: "status|µs|<len of code>|<code><message>"; records
//	                              written by older versions have hist, JSON lines, parsed first),
//	                              cids (JSON array), ncid, ev (event filter: first letters of
//	                              the statuses emitted; absent: all), k (kind of a message the
//	                              daemon sent on its own: notice, reply; absent: the app's),
//	                              to (a notice's recipient: a notice that ends failed, expired
//	                              or undelivered leaves its conversation unstarted again),
//	                              r<seg> (receipt state per segment), dlv (delivered segments);
//	                              expires Retention after it was sent or finished
//	base+"idem:"+org+":"+key HASH h (request hash), r (response); TTL IdempotencyTTL
//	base+"optout:"+from     SET   numbers that opted out of from
//	base+"conv:"+from       SET   numbers with a started conversation (notice queued and not failed, or texted first)
//	base+"stopall:"+org     SET   numbers whose opt-out from the org came from STOPALL, until their
//	                              START (base of the bucket of "org:"+org)
//	base+"events"           STREAM type, org, data (JSON); MAXLEN ~ StreamMaxLen (entries
//	                              written by older versions also have id and at)
//
// The parts of concatenated inbound messages (AddMOPart) live in one slot
// per carrier:
//
//	<prefix>{mo:<carrier>}:p:<key>    HASH  part number -> part, of one MO not handed on yet, plus
//	                                        f (first part's arrival, ms) and l (held by a caller);
//	                                        TTL MOPartsTTL
//	<prefix>{mo:<carrier>}:index      ZSET  assembly key -> when TakeMOs may take it (ms): the
//	                                        reassembly timeout, or the end of a hold (MOLease)
//	<prefix>{mo:<carrier>}:done:<key> STRING an MO handed on; a late copy of its parts is dropped
//
// Carrier message ids hash (crc32 mod Buckets) to their own tag {c<N>}:
//
//	<prefix>{c<N>}:cid:<cid>   STRING "msgID|segment"; TTL CarrierIDTTL
//	<prefix>{c<N>}:held:<cid>  LIST   receipts that arrived before the ack (or while the
//	                                  message was indexed but not acked); TTL 1h
//	<prefix>{c<N>}:heldset     ZSET   carrier ids with held receipts -> when SweepHeld looks next
//
// # Scheduling
//
// Claim keeps per bucket a hint of its earliest ready time and due count,
// learned from the reply of every script the Queue runs there, and runs the
// claim script only on buckets due by the hints (one pipelined round trip);
// a pipelined ZRANGE of every bucket at most every ProbeInterval (50 ms)
// notices what other daemons queued or released. The claim script takes the
// due senders of a bucket earliest first, drops expired
// heads (status expired, with its event) and heads that Reap already ended
// (see xq), leases the head and advances the
// sender's next-allowed time by interval × segments (GCRA; a sender claimed
// late may catch up by at most one interval, capped at 20 ms, so any one-second
// window sees at most rate + 1 segments). With the default SenderWindow of 1
// a sender leaves ready while its message is in flight and comes back on
// Ack, Retry, Requeue, Fail or Reap: per-number order is strict across
// daemons. A message whose lease expires (the daemon died) is put back by
// any daemon's Reap and flagged as a possible duplicate.
//
// Expiry: claim ends expired heads. Reap also ends the messages of the
// expiry index xq whose validity passed (those that expire before a message
// ahead of them; their ids stay in the list, counted in the sender's field
// dq, until claim drops them), and ExpireHeads ends expired heads without
// claiming, for the dispatcher to call while no carrier is up and claims do
// not run.
//
// Idempotency records (request hash and first response) live in the
// sender's bucket, so Enqueue checks them atomically; BindIdempotencyKey
// first ties an org's key to one sender number org-wide
// ("<prefix>idemorg:<hash of org and key>", TTL IdempotencyTTL), so the same
// key used from another of the org's numbers is a conflict.
//
// Ack and the carrier-id index (SET and a read of the receipts held for the
// id, other slots) go in one pipeline,
// the index first, so an ack that ran is always indexed; a receipt whose
// message is indexed but still queued (its ack has not run, or never will:
// the daemon died and the message is sent again) is held, not recorded.
// Held receipts leave their list only once applied, so a daemon dying in
// between loses none: SweepHeld (every daemon, periodically) applies those
// whose carrier id is indexed by now. AckMany and ApplyReceipts batch
// several messages per round trip.
//
// Events: every status change after queued (sent, delivered, undelivered,
// failed, expired) appends a message.status entry to the bucket's stream in
// the same script, unless the message's event filter (EnqueueRequest.
// StatusEvents) leaves that status out; AppendReceived appends
// message.received entries. An event's id and time derive from its stream
// entry id (the webhook names it "evt_b<bucket>_<ms>_<seq>"), unique per
// Redis dataset; entries of older versions carry their own id and at fields.
//
// Scripts start with "#!lua" so Redis 7 refuses any key outside the slot of
// the declared key; the queue falls back to plain scripts on a server that
// cannot parse the header (miniredis, see NewEmbedded).
package queue
