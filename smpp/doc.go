// Package smpp connects smsgate to carrier SMSCs over SMPP 3.4.
//
// It uses gosmpp's pdu codec and data encodings only; connections, windows
// and timers are its own (docs/ARCHITECTURE.md, "SMPP", says why). Nothing
// outside smpp/ and testharness/ imports gosmpp.
//
// A Pool holds the binds of one carrier. Each bind dials (TCP, or TLS with
// certificate verification and an optional CA file), binds as transceiver or
// as a transmitter+receiver pair within BindTimeout, and runs per connection
// one reader, one buffered writer (batched flushes), one keeper (enquire_link
// every EnquireLink; a link whose enquire_link is unanswered after
// ResponseTimeout is dead) and a few inbound workers. It answers the SMSC's
// enquire_link and unbind, takes deliver_sm and data_sm, answers any other
// command id with generic_nack ESME_RINVCMDID and stays bound. A PDU over
// 64 KiB (gosmpp's limit) up to 1 MiB is read past, not decoded: a
// deliver_sm or data_sm gets its own response ESME_RX_P_APPN, another
// request generic_nack ESME_RINVCMDLEN, a response counts by its header. A
// deliver_sm or data_sm that cannot be decoded is answered with a
// permanent status too: ESME_RINVTLVLEN (a TLV length past the end),
// ESME_RINVTLVSTREAM (the stream cut inside a TLV header), else
// ESME_RX_P_APPN; so the carrier does not deliver it again and again. Each
// is logged (command id, length, sequence; never the content) and counted
// in smsgate_smpp_undecodable_pdus_total. The link closes only when
// framing is lost (a command_length under 16 or over 1 MiB). A lost or
// refused bind is retried with exponential backoff from ReconnectMin to
// ReconnectMax with equal jitter. In transmitter+receiver mode the pair is
// one unit: when either connection drops, both are re-established.
//
// Session lost: ESME_RINVBNDSTS or ESME_RALYBND answering a submit_sm
// (submit_sm_resp or generic_nack) or an enquire_link means the SMSC no
// longer holds the session as bound although TCP is up. The submit is
// Temporary (not sent); the link takes no new submit_sm and is closed, so
// the bind rebinds with its usual backoff, as soon as the submit_sm still
// in flight are answered or timed out (their own answers reach the callers
// rather than ErrLinkLost, which would make them possible duplicates).
//
// Window: at most Window submit_sm in flight per bind (a blocking
// semaphore; the slot is freed by whatever finishes the request: response,
// generic_nack, response timeout, or loss of the connection). Sequence
// numbers are per connection. A request is finished only by its own
// response command (submit_sm_resp for a submit_sm...) or generic_nack
// with its sequence number; a response of another command with that
// number is logged and ignored. Every request sent is finished exactly
// once; unanswered ones come back as Outcome Unknown, never silently. An
// ESME_ROK submit_sm_resp without message_id is OK with a "" carrier id,
// counted in Result.MissingIDs and smsgate_smpp_submit_sm_missing_id_total.
//
// Throughput: see limiter (strict pacing at the configured rate, AIMD on
// ESME_RTHROTTLED / ESME_RMSGQFUL, also when the configured rate is 0).
//
// Segmentation uses package message: UDH (8-bit reference, one counter per
// destination hash bucket), SAR TLVs, or one message_payload, per carrier
// long_messages; data_coding 0 (GSM-7, packed only with gsm7_packed) or 8
// (UCS-2); registered_delivery 1 on every part; validity_period as absolute
// UTC time. Addresses: "+digits" go out as TON 1 / NPI 1 without the "+";
// other digits as TON 0 / NPI 1; anything else as alphanumeric (TON 5).
//
// Inbound deliver_sm are receipts (esm_class bit 0x04, a
// receipted_message_id TLV, or a text starting "id:" with a "stat:" field)
// or MO messages. The reader never waits for the Handler: it queues each
// deliver_sm for the link's inbound workers and answers one that does not
// fit (queue full) with ESME_RX_T_APPN at once, so submit_sm_resp are never
// stuck behind receipts. A Handler that also implements ReceiptBatchHandler
// gets the receipts queued at that moment together (up to MaxReceiptBatch,
// no waiting to fill a batch). While more than backlogHigh receipts wait for
// the Handler across the pool, new submits wait and Free reports 0: a
// Handler slower than the carrier slows sending down instead of having
// receipts refused and redelivered over and over. The deliver_sm_resp is
// sent after the Handler returns (for a batch, after the call, by each
// receipt's own result): ESME_ROK, or ESME_RX_T_APPN when it failed so the
// carrier redelivers. A data_sm from the SMSC (some deliver MO messages and
// receipts that way: the text in message_payload, a receipt's fields in
// TLVs) is handled as the deliver_sm it stands for and answered with
// data_sm_resp. The parts of a concatenated MO are joined in a PartStore
// when the pool has one (shared by the daemons; see PartStore), else in the
// pool's memory (see reassembler for its acknowledgement policy and loss
// window); both hand on an MO still incomplete after the reassembly timeout.
// Carrier message ids are passed on as received; compare them with
// NormalizeID.
package smpp
