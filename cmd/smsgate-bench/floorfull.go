package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/smpp"
)

// floorCarrier is the part of the floor gateway that -floor-full adds: per
// message the least carrier and store work a gateway that keeps what it
// accepted needs, on top of the contract's HTTP work.
//
//   - Store: before its 202 a message (and its notice) is written to Redis
//     (one HSET each, AOF everysec as in the e2e run); a submit_sm_resp writes
//     the carrier id's index and the status sent; a receipt reads the index
//     and writes the status delivered (one small script). Every write of the
//     gateway goes through one group commit: whatever is waiting goes in one
//     pipeline, so concurrent requests share round trips.
//   - Carrier: the SMPP binds of the e2e run (transceivers, its window), one
//     writer goroutine per bind flushing when nothing else waits, one reader
//     decoding with gosmpp, a receipt's deliver_sm_resp written once its
//     status is stored.
//
// It keeps no queue (no per-number order, rates or leases), retries nothing,
// checks nothing and never restarts: what it costs is a floor under any
// gateway doing this traffic with these parts, not a gateway.
type floorCarrier struct {
	core    *floorCore
	rdb     *redis.Client
	prefix  string // of every key
	ops     chan floorOp
	submits chan floorMsg
	binds   []*floorBind
	stop    chan struct{} // closed by close: pending retries give up
	wg      sync.WaitGroup
}

// floorMsg is a message (or notice) of the floor gateway.
type floorMsg struct{ id, ref, from, to, text string }

// floorOp is one group-committed unit: its commands go in the next
// pipeline, then done runs on the commit goroutine (it must not block on
// ops).
type floorOp struct {
	cmds []redis.Cmder
	done func()
}

// floorReceiptScript resolves a receipt in one round trip: the carrier id's
// index entry ("id|client_ref"), and the message's status set to delivered.
// The floor runs on one plain redis-server, so the script may name the
// message's key itself.
var floorReceiptScript = redis.NewScript(`local v = redis.call('GET', KEYS[1])
if v then redis.call('HSET', ARGV[1] .. 'm:' .. string.match(v, '^[^|]*'), 'st', 'delivered') end
return v`)

// newFloorCarrier connects to Redis at redisAddr (keys starting with
// prefix) and binds binds transceivers to the SMSC at smsc with systemID
// and password, each with window submit_sm awaiting their answer.
func newFloorCarrier(core *floorCore, redisAddr, prefix, smsc, systemID, password string, binds, window int) (*floorCarrier, error) {
	c := &floorCarrier{
		core:    core,
		prefix:  prefix,
		rdb:     redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 4}),
		ops:     make(chan floorOp, 4096),
		submits: make(chan floorMsg, 1<<16),
		stop:    make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		_ = c.rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", redisAddr, err)
	}
	if err := floorReceiptScript.Load(ctx, c.rdb).Err(); err != nil {
		_ = c.rdb.Close()
		return nil, fmt.Errorf("redis %s: load script: %w", redisAddr, err)
	}
	for i := range binds {
		b, err := dialFloorBind(ctx, c, smsc, systemID, password, window)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("bind %d to %s: %w", i+1, smsc, err)
		}
		c.binds = append(c.binds, b)
	}
	c.wg.Go(c.commitLoop)
	for _, b := range c.binds {
		c.wg.Go(b.writeLoop)
		c.wg.Go(b.readLoop)
	}
	return c, nil
}

// accept stores msgs (group committed) and queues them for the binds; the
// caller answers 202 once it returns nil.
func (c *floorCarrier) accept(msgs []floorMsg) error {
	ctx := context.Background()
	cmds := make([]redis.Cmder, len(msgs))
	for i, m := range msgs {
		cmds[i] = redis.NewIntCmd(ctx, "hset", c.prefix+"m:"+m.id, "from", m.from, "to", m.to, "ref", m.ref, "text", m.text, "st", "queued")
	}
	stored := make(chan struct{})
	select {
	case c.ops <- floorOp{cmds: cmds, done: func() { close(stored) }}:
	case <-c.stop:
		return errors.New("floor carrier stopped")
	}
	select {
	case <-stored:
	case <-c.stop:
		return errors.New("floor carrier stopped")
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	for _, m := range msgs {
		select {
		case c.submits <- m:
		case <-c.stop:
			return errors.New("floor carrier stopped")
		}
	}
	return nil
}

// commitLoop runs the group commit: each pipeline carries every op waiting
// (up to 512), then the ops' done run, then binds with answers written
// meanwhile are flushed.
func (c *floorCarrier) commitLoop() {
	ctx := context.Background()
	batch := make([]floorOp, 0, 512)
	for {
		var op floorOp
		select {
		case op = <-c.ops:
		case <-c.stop:
			return
		}
		batch = append(batch[:0], op)
	drain:
		for len(batch) < cap(batch) {
			select {
			case op := <-c.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		pipe := c.rdb.Pipeline()
		for _, op := range batch {
			for _, cmd := range op.cmds {
				_ = pipe.Process(ctx, cmd)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			fmt.Fprintln(os.Stderr, "floor-gateway: redis:", err)
		}
		for _, op := range batch {
			op.done()
		}
		clear(batch)
		for _, b := range c.binds {
			b.flush()
		}
	}
}

// send queues op for the group commit, unless the carrier stops first.
func (c *floorCarrier) send(op floorOp) {
	select {
	case c.ops <- op:
	case <-c.stop:
	}
}

// later queues op again after d (a receipt whose submit_sm_resp is not
// stored yet), unless the carrier stops first.
func (c *floorCarrier) later(d time.Duration, op floorOp) {
	time.AfterFunc(d, func() { c.send(op) })
}

// close unbinds nothing (the run is over): it closes the connections and
// stops the loops (ops still queued are dropped) and the Redis client. No
// accept may be running or start.
func (c *floorCarrier) close() {
	close(c.stop)
	for _, b := range c.binds {
		_ = b.conn.Close()
	}
	close(c.submits)
	c.wg.Wait()
	_ = c.rdb.Close()
}

// floorBind is one transceiver of the floor carrier.
type floorBind struct {
	c    *floorCarrier
	conn net.Conn
	br   *bufio.Reader

	window chan struct{} // a slot per submit_sm awaiting its response

	mu      sync.Mutex // guards bw, seq, pending, dirty
	bw      *bufio.Writer
	seq     int32
	pending map[int32]floorMsg
	dirty   bool
}

func dialFloorBind(ctx context.Context, c *floorCarrier, smsc, systemID, password string, window int) (*floorBind, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", smsc)
	if err != nil {
		return nil, err
	}
	b := &floorBind{c: c, conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 64<<10),
		window: make(chan struct{}, window), pending: map[int32]floorMsg{}}
	req := pdu.NewBindRequest(pdu.Transceiver)
	req.SystemID, req.Password = systemID, password
	b.mu.Lock()
	b.write(req)
	err = b.bw.Flush()
	b.mu.Unlock()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	resp, err := pdu.Parse(b.br)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if h := resp.GetHeader(); h.CommandID != data.BIND_TRANSCEIVER_RESP || h.CommandStatus != data.ESME_ROK {
		_ = conn.Close()
		return nil, fmt.Errorf("bind answered command 0x%08x status 0x%08x", uint32(h.CommandID), uint32(h.CommandStatus))
	}
	return b, nil
}

// write encodes p with the next sequence number into bw; b.mu is held.
func (b *floorBind) write(p pdu.PDU) int32 {
	b.seq++
	if b.seq <= 0 { // wrapped: sequence numbers are 1 to 0x7fffffff
		b.seq = 1
	}
	p.SetSequenceNumber(b.seq)
	b.encode(p)
	return b.seq
}

// encode writes p as it is into bw; b.mu is held.
func (b *floorBind) encode(p pdu.PDU) {
	buf := pdu.NewBuffer(make([]byte, 0, 256))
	p.Marshal(buf)
	_, _ = b.bw.Write(buf.Bytes())
	b.dirty = true
}

// respond writes answer resp to the request with sequence number seq, for
// the next flush.
func (b *floorBind) respond(resp pdu.PDU, seq int32) {
	resp.SetSequenceNumber(seq)
	b.mu.Lock()
	b.encode(resp)
	b.mu.Unlock()
}

// flush sends what was written since the last flush.
func (b *floorBind) flush() {
	b.mu.Lock()
	if b.dirty {
		_ = b.bw.Flush()
		b.dirty = false
	}
	b.mu.Unlock()
}

// writeLoop sends the queued messages as window slots free, flushing once
// no other message is waiting, or before waiting for a slot (the answers
// that free one come only for what was sent).
func (b *floorBind) writeLoop() {
	for m := range b.c.submits {
		select {
		case b.window <- struct{}{}:
		default:
			b.flush()
			select {
			case b.window <- struct{}{}:
			case <-b.c.stop:
				return
			}
		}
		sm := pdu.NewSubmitSM().(*pdu.SubmitSM)
		sm.SourceAddr = floorAddr(m.from)
		sm.DestAddr = floorAddr(m.to)
		sm.RegisteredDelivery = 1
		if err := sm.Message.SetMessageWithEncoding(m.text, data.GSM7BIT); err != nil {
			fmt.Fprintln(os.Stderr, "floor-gateway: encode:", err)
			<-b.window
			continue
		}
		b.mu.Lock()
		seq := b.write(sm)
		b.pending[seq] = m
		b.mu.Unlock()
		if len(b.c.submits) == 0 {
			b.flush()
		}
	}
}

// floorAddr is an SMPP address for a number: international without its +.
func floorAddr(n string) pdu.Address {
	a := pdu.NewAddressWithTonNpi(1, 1)
	_ = a.SetAddress(strings.TrimPrefix(n, "+"))
	return a
}

// readLoop handles what the SMSC sends until the connection closes.
func (b *floorBind) readLoop() {
	for {
		p, err := pdu.Parse(b.br)
		if err != nil {
			select {
			case <-b.c.stop:
			default:
				fmt.Fprintln(os.Stderr, "floor-gateway: smpp read:", err)
			}
			return
		}
		seq := p.GetSequenceNumber()
		switch p := p.(type) {
		case *pdu.SubmitSMResp:
			b.submitted(seq, p)
		case *pdu.DeliverSM:
			b.receipt(seq, p)
		case *pdu.EnquireLink:
			b.respond(pdu.NewEnquireLinkResp(), seq)
			b.flush()
		}
	}
}

// submitted stores the carrier id's index and the status sent of the
// message answered by resp, then emits its sent event.
func (b *floorBind) submitted(seq int32, resp *pdu.SubmitSMResp) {
	b.mu.Lock()
	m, ok := b.pending[seq]
	delete(b.pending, seq)
	b.mu.Unlock()
	if !ok {
		return
	}
	<-b.window
	if resp.CommandStatus != data.ESME_ROK || resp.MessageID == "" {
		fmt.Fprintf(os.Stderr, "floor-gateway: submit_sm answered status 0x%08x, id %q\n", uint32(resp.CommandStatus), resp.MessageID)
		return
	}
	ctx := context.Background()
	cmds := []redis.Cmder{
		redis.NewStatusCmd(ctx, "set", b.c.prefix+"c:"+resp.MessageID, m.id+"|"+m.ref, "ex", 86400),
		redis.NewIntCmd(ctx, "hset", b.c.prefix+"m:"+m.id, "st", "sent"),
	}
	b.c.send(floorOp{cmds: cmds, done: func() {
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				fmt.Fprintln(os.Stderr, "floor-gateway: sent:", err) // no event: the run ends incomplete
				return
			}
		}
		b.c.core.emitStatus(m.ref, m.id, "sent")
	}})
}

// receipt resolves the receipt in deliver_sm d (sequence number seq),
// stores the status delivered, emits the event and only then answers the
// deliver_sm; a receipt whose submit_sm_resp is not stored yet is tried
// again shortly.
func (b *floorBind) receipt(seq int32, d *pdu.DeliverSM) {
	text, err := d.Message.GetMessage()
	r, ok := smpp.ParseReceiptText(text)
	if err != nil || !ok || d.EsmClass&0x3c != 0x04 {
		b.respond(pdu.NewDeliverSMResp(), seq) // not a receipt: the floor takes no MO
		b.flush()
		return
	}
	ctx := context.Background()
	eval := func() *redis.Cmd {
		return redis.NewCmd(ctx, "evalsha", floorReceiptScript.Hash(), 1, b.c.prefix+"c:"+r.ID, b.c.prefix)
	}
	cmd := eval()
	var op floorOp
	op = floorOp{cmds: []redis.Cmder{cmd}, done: func() {
		v, err := cmd.Text()
		if errors.Is(err, redis.Nil) {
			cmd = eval()
			op.cmds[0] = cmd
			b.c.later(5*time.Millisecond, op)
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor-gateway: receipt:", err)
			resp := pdu.NewDeliverSMResp()
			resp.(*pdu.DeliverSMResp).CommandStatus = data.ESME_RX_T_APPN
			b.respond(resp, seq)
			return
		}
		id, ref, _ := strings.Cut(v, "|")
		b.c.core.emitStatus(ref, id, "delivered")
		b.respond(pdu.NewDeliverSMResp(), seq)
	}}
	b.c.send(op)
}
