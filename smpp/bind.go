package smpp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smsgate/smsgate/config"
)

// Bind modes (config.Bind.Mode).
const (
	ModeTransceiver = "transceiver"
	ModeTxRx        = "transmitter+receiver"
)

// normalizeBind fills zero values with the defaults of config/schema.go and
// checks what the bind cannot work without.
func normalizeBind(carrier string, i int, c config.Bind) (config.Bind, error) {
	if c.Name == "" {
		c.Name = fmt.Sprintf("%s-%d", carrier, i)
	}
	if c.Mode == "" {
		c.Mode = ModeTransceiver
	}
	if c.Window <= 0 {
		c.Window = 10
	}
	if c.EnquireLink <= 0 {
		c.EnquireLink = 30 * time.Second
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = 10 * time.Second
	}
	if c.BindTimeout <= 0 {
		c.BindTimeout = 10 * time.Second
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = time.Second
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = 60 * time.Second
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.Password == "" && c.PasswordEnv != "" {
		c.Password = os.Getenv(c.PasswordEnv)
	}
	switch {
	case c.Host == "":
		return c, fmt.Errorf("smpp: bind %s: host is empty", c.Name)
	case c.Port <= 0 || c.Port > 65535:
		return c, fmt.Errorf("smpp: bind %s: port %d out of range", c.Name, c.Port)
	case c.Mode != ModeTransceiver && c.Mode != ModeTxRx:
		return c, fmt.Errorf("smpp: bind %s: mode %q: want %q or %q", c.Name, c.Mode, ModeTransceiver, ModeTxRx)
	case c.Throughput < 0:
		return c, fmt.Errorf("smpp: bind %s: negative throughput", c.Name)
	}
	return c, nil
}

func tlsConfig(c config.Bind) (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if tc.ServerName == "" {
		tc.ServerName = c.Host
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("smpp: bind %s: tls ca file: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smpp: bind %s: tls ca file %s: no PEM certificate", c.Name, c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// bind is one configured SMPP bind: it connects, binds, keeps the session
// and reconnects with backoff until shut down.
type bind struct {
	p    *Pool
	name string
	cfg  config.Bind
	tls  *tls.Config
	log  *slog.Logger
	m    *bindMetrics
	lim  *limiter

	sem      chan struct{} // window: one token per submit_sm in flight
	picking  atomic.Int32  // submits that picked this bind and have not asked for a window slot yet
	state    atomic.Int32  // index in allStates
	sess     atomic.Pointer[session]
	draining atomic.Bool // shutting down: no new submit_sm
	detached atomic.Bool // replaced or removed: stop touching shared metrics
	// missingWarn is when (unix ns) a submit_sm_resp without message_id
	// was last logged.
	missingWarn atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// session is one bound connection set: tx == rx for a transceiver.
type session struct {
	tx, rx *link
}

func (s *session) links() []*link {
	if s.tx == s.rx {
		return []*link{s.tx}
	}
	return []*link{s.tx, s.rx}
}

func (s *session) close(cause error) {
	for _, l := range s.links() {
		l.close(cause)
	}
	for _, l := range s.links() {
		l.wait()
	}
}

func (p *Pool) newBind(cfg config.Bind, tc *tls.Config) *bind {
	ctx, cancel := context.WithCancel(context.Background())
	b := &bind{
		p:      p,
		name:   cfg.Name,
		cfg:    cfg,
		tls:    tc,
		log:    p.log.With("bind", cfg.Name),
		m:      p.m.forBind(p.carrier, cfg.Name),
		sem:    make(chan struct{}, cfg.Window),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	b.lim = newLimiter(cfg.Throughput, func(r float64) {
		if !b.detached.Load() {
			b.m.rate.Set(r)
		}
	})
	b.setState(StateConnecting)
	return b
}

func (b *bind) start() { go b.run() }

func (b *bind) setState(s string) {
	for i, v := range allStates {
		if v == s {
			b.state.Store(int32(i))
		}
	}
	if !b.detached.Load() {
		b.m.setState(s)
	}
}

func (b *bind) State() string { return allStates[b.state.Load()] }

// usable: bound, not shutting down, and the SMSC has not said it lost
// the session (a stale link takes no new submit_sm while it drains).
func (b *bind) usable() bool {
	s := b.sess.Load()
	return b.State() == StateBound && !b.draining.Load() && s != nil && !s.tx.stale.Load()
}

func (b *bind) run() {
	defer close(b.done)
	attempt := 0
	lastErr := ""
	for b.ctx.Err() == nil {
		b.setState(StateConnecting)
		s, err := b.connect(b.ctx)
		if err != nil {
			if b.ctx.Err() != nil {
				break
			}
			if msg := err.Error(); msg != lastErr {
				b.log.Warn("smpp bind failed", "err", err, "attempt", attempt+1)
				lastErr = msg
			} else {
				b.log.Debug("smpp bind failed again", "err", err, "attempt", attempt+1)
			}
			b.setState(StateBackoff)
			if !b.sleep(b.backoff(attempt)) {
				break
			}
			attempt++
			b.m.reconnects.Inc()
			continue
		}
		attempt, lastErr = 0, ""
		b.sess.Store(s)
		b.setState(StateBound)
		b.log.Info("smpp bound", "mode", b.cfg.Mode)
		select {
		case <-s.tx.done:
		case <-s.rx.done:
		case <-b.ctx.Done():
		}
		b.sess.Store(nil)
		cause := s.tx.err()
		if cause == nil {
			cause = s.rx.err()
		}
		s.close(errLocalClose)
		if b.ctx.Err() != nil || b.draining.Load() {
			break
		}
		b.log.Warn("smpp bind lost", "err", cause)
		b.setState(StateBackoff)
		if !b.sleep(b.backoff(0)) {
			break
		}
		attempt = 1
		b.m.reconnects.Inc()
	}
	b.setState(StateClosed)
}

// backoff is exponential from ReconnectMin, capped at ReconnectMax, with
// equal jitter (half fixed, half random).
func (b *bind) backoff(attempt int) time.Duration {
	d := b.cfg.ReconnectMin
	for i := 0; i < attempt && d < b.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, b.cfg.ReconnectMax)
	half := d / 2
	return half + rand.N(d-half+1)
}

func (b *bind) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

func (b *bind) connect(ctx context.Context) (*session, error) {
	if b.cfg.Mode == ModeTransceiver {
		l, err := b.open(ctx, "trx", pdu.Transceiver)
		if err != nil {
			return nil, err
		}
		return &session{tx: l, rx: l}, nil
	}
	tx, err := b.open(ctx, "tx", pdu.Transmitter)
	if err != nil {
		return nil, err
	}
	rx, err := b.open(ctx, "rx", pdu.Receiver)
	if err != nil {
		tx.close(errLocalClose)
		tx.wait()
		return nil, err
	}
	return &session{tx: tx, rx: rx}, nil
}

// open dials and binds one link within BindTimeout.
func (b *bind) open(ctx context.Context, role string, bt pdu.BindingType) (*link, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.BindTimeout)
	defer cancel()
	addr := net.JoinHostPort(b.cfg.Host, strconv.Itoa(b.cfg.Port))
	d := &net.Dialer{Timeout: b.cfg.BindTimeout, KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if b.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: b.tls}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("smpp: dial %s: %w", addr, err)
	}
	l := newLink(b, role, conn)
	l.start()
	req := pdu.NewBindRequest(bt)
	req.SystemID = b.cfg.SystemID
	req.Password = b.cfg.Password
	req.SystemType = b.cfg.SystemType
	dl, _ := ctx.Deadline()
	status, err := l.request(ctx, kindBind, req, time.Until(dl))
	if err == nil && status != StatusOK {
		err = &StatusError{Status: status}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = ErrTimeout
		}
		l.close(errLocalClose)
		l.wait()
		return nil, fmt.Errorf("smpp: bind %s to %s: %w", role, addr, err)
	}
	l.bound.Store(true)
	return l, nil
}

// shutdown stops new submits, waits for the window to drain (bounded by
// ctx), unbinds and stops the bind.
func (b *bind) shutdown(ctx context.Context) error {
	b.draining.Store(true)
	err := b.waitDrained(ctx)
	if s := b.sess.Load(); s != nil {
		uctx, cancel := context.WithTimeout(ctx, b.cfg.ResponseTimeout)
		for _, l := range s.links() {
			if _, uerr := l.request(uctx, kindUnbind, pdu.NewUnbind(), b.cfg.ResponseTimeout); uerr != nil {
				b.log.Debug("smpp unbind unanswered", "err", uerr)
			}
		}
		cancel()
	}
	b.cancel()
	<-b.done
	return err
}

func (b *bind) waitDrained(ctx context.Context) error {
	if len(b.sem) == 0 {
		return nil
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(b.sem) > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("smpp: bind %s: %d submit_sm unanswered at close: %w", b.name, len(b.sem), ctx.Err())
		}
	}
	return nil
}

func (b *bind) acquire(ctx context.Context) error {
	select {
	case b.sem <- struct{}{}:
	default:
		select {
		case b.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.ctx.Done():
			return ErrClosed
		}
	}
	b.m.inFlight.Inc()
	return nil
}

func (b *bind) release() {
	<-b.sem
	b.m.inFlight.Dec()
}

// answered runs when a submit_sm request finishes (response, timeout or
// link loss): it frees the window slot and feeds metrics and the limiter.
func (b *bind) answered(r *request) {
	b.release()
	if r.err == nil {
		b.m.latency.Observe(time.Since(r.sent).Seconds())
	}
	b.m.submitted(r.status, r.err)
	if r.err == nil && r.status == StatusOK && r.msgID == "" {
		b.m.missingIDs.Inc()
		if now := time.Now(); now.UnixNano()-b.missingWarn.Load() >= int64(missingWarnEvery) {
			b.missingWarn.Store(now.UnixNano())
			b.log.Warn("smpp submit_sm_resp ESME_ROK without message_id: the segment was accepted but no receipt can be matched to it (more are counted in smsgate_smpp_submit_sm_missing_id_total)",
				"sequence", r.seq)
		}
	}
	if r.err == nil && (r.status == StatusThrottled || r.status == StatusMsgQFull) {
		b.m.throttles.Inc()
		if b.lim.throttled() {
			b.log.Debug("smpp carrier throttling: rate lowered", "status", StatusName(r.status))
		}
	}
}

// missingWarnEvery spaces the warnings about submit_sm_resp without
// message_id (a carrier that never sends one would log every submit).
const missingWarnEvery = 10 * time.Second

// submit sends the frames of one message through the window, in order,
// and waits for every response. See Result for the outcome rules.
func (b *bind) submit(ctx context.Context, frames [][]byte) Result {
	// This submit was counted in picking by Pool.pick until it asks for
	// its first window slot.
	picked := true
	unpick := func() {
		if picked {
			picked = false
			b.picking.Add(-1)
		}
	}
	defer unpick()
	n := len(frames)
	var one [1]*request
	reqs := one[:]
	if n > 1 {
		reqs = make([]*request, n)
	}
	res := Result{CarrierIDs: make([]string, n)}
	if err := b.p.backlog.wait(ctx); err != nil {
		res.Outcome, res.Err = Temporary, fmt.Errorf("%w: waiting for receipts to be handled: %w", ErrNotSent, err)
		return res
	}
	var agg aggregate
	for i, f := range frames {
		err := b.acquire(ctx)
		unpick()
		if err != nil {
			agg.add(Temporary, 0, fmt.Errorf("%w: waiting for a window slot: %w", ErrNotSent, err))
			break
		}
		if err := b.lim.wait(ctx); err != nil {
			b.release()
			agg.add(Temporary, 0, fmt.Errorf("%w: waiting for throughput: %w", ErrNotSent, err))
			break
		}
		s := b.sess.Load()
		if s == nil || b.draining.Load() {
			b.release()
			agg.add(Temporary, 0, ErrNotBound)
			break
		}
		if s.tx.suspect.Load() {
			b.release()
			agg.add(Temporary, 0, fmt.Errorf("%w: a submit_sm went unanswered; waiting for enquire_link_resp before sending more", ErrNotSent))
			break
		}
		r := getRequest(kindSubmit, b)
		if err := s.tx.send(r, f, b.cfg.ResponseTimeout); err != nil {
			putRequest(r)
			b.release()
			agg.add(Temporary, 0, ErrNotBound)
			break
		}
		reqs[i] = r
	}
	for i, r := range reqs {
		if r == nil {
			continue
		}
		select {
		case <-r.done:
		default:
			select {
			case <-r.done:
			case <-ctx.Done():
				// Sent, not answered: the request stays in flight (its slot
				// is freed when it finishes) and is not recycled.
				agg.add(Unknown, 0, fmt.Errorf("smpp: gave up waiting for submit_sm_resp: %w", ctx.Err()))
				continue
			}
		}
		switch {
		case r.err != nil:
			agg.add(Unknown, 0, r.err)
		case r.status == StatusOK:
			res.CarrierIDs[i] = r.msgID // "" when the SMSC sent none
			if r.msgID == "" {
				res.MissingIDs++
			}
			agg.add(OK, 0, nil)
		default:
			agg.add(Classify(r.status), r.status, &StatusError{Status: r.status})
		}
		putRequest(r)
	}
	res.Outcome, res.Status, res.Err = agg.result()
	return res
}

// aggregate combines segment outcomes: Permanent if any is permanent, else
// Unknown if any is unknown, else Temporary if any is temporary, else OK.
// Status and Err come from the first segment of the deciding class.
type aggregate struct {
	seen [Unknown + 1]bool
	st   [Unknown + 1]uint32
	err  [Unknown + 1]error
}

func (a *aggregate) add(o Outcome, status uint32, err error) {
	if !a.seen[o] {
		a.seen[o], a.st[o], a.err[o] = true, status, err
	}
}

func (a *aggregate) result() (Outcome, uint32, error) {
	for _, o := range [...]Outcome{Permanent, Unknown, Temporary} {
		if a.seen[o] {
			return o, a.st[o], a.err[o]
		}
	}
	return OK, 0, nil
}
