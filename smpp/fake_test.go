package smpp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

// fakeSMSC is a minimal scripted SMSC for the faults the simulator does
// not play. onSubmit decides how to answer each submit_sm.
type fakeSMSC struct {
	ln       net.Listener
	accepts  atomic.Int32
	mu       sync.Mutex
	conns    []*fakeConn
	received []pdu.Header
	wg       sync.WaitGroup

	blackhole     atomic.Bool // read and drop everything
	outstanding   atomic.Int32
	maxOut        atomic.Int32
	enquireStatus atomic.Uint32 // command_status of enquire_link_resp
	onSubmit      func(c *fakeConn, h pdu.Header)
}

type fakeConn struct {
	net.Conn
	wmu sync.Mutex
}

func (c *fakeConn) send(p pdu.PDU) { c.sendRaw(marshal(p)) }

func (c *fakeConn) sendRaw(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.Write(b)
}

func newFakeSMSC(t *testing.T, ln net.Listener) *fakeSMSC {
	t.Helper()
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	f := &fakeSMSC{ln: ln}
	f.onSubmit = func(c *fakeConn, h pdu.Header) { f.answer(c, h, 0, 0) }
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			c := &fakeConn{Conn: conn}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeSMSC) addr() string { return f.ln.Addr().String() }

func (f *fakeSMSC) last() *fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns[len(f.conns)-1]
}

func (f *fakeSMSC) headers() []pdu.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pdu.Header(nil), f.received...)
}

// answer responds to a submit_sm after delay with status.
func (f *fakeSMSC) answer(c *fakeConn, h pdu.Header, delay time.Duration, status uint32) {
	n := f.outstanding.Add(1)
	for {
		m := f.maxOut.Load()
		if n <= m || f.maxOut.CompareAndSwap(m, n) {
			break
		}
	}
	reply := func() {
		f.outstanding.Add(-1)
		r := pdu.NewSubmitSMResp().(*pdu.SubmitSMResp)
		r.SequenceNumber = h.SequenceNumber
		r.CommandStatus = data.CommandStatusType(status)
		r.MessageID = "id" + strconv.Itoa(int(h.SequenceNumber))
		c.send(r)
	}
	if delay > 0 {
		time.AfterFunc(delay, reply)
		return
	}
	reply()
}

func (f *fakeSMSC) serve(c *fakeConn) {
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		h := pdu.ParseHeader(hdr)
		body := make([]byte, h.CommandLength-16)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		f.mu.Lock()
		f.received = append(f.received, h)
		f.mu.Unlock()
		if f.blackhole.Load() {
			continue
		}
		switch h.CommandID {
		case data.BIND_TRANSCEIVER, data.BIND_TRANSMITTER, data.BIND_RECEIVER:
			r := pdu.NewBindTransceiverResp()
			r.SetSequenceNumber(h.SequenceNumber)
			c.send(r)
		case data.ENQUIRE_LINK:
			r := pdu.NewEnquireLinkResp().(*pdu.EnquireLinkResp)
			r.SetSequenceNumber(h.SequenceNumber)
			r.CommandStatus = data.CommandStatusType(f.enquireStatus.Load())
			c.send(r)
		case data.UNBIND:
			r := pdu.NewUnbindResp()
			r.SetSequenceNumber(h.SequenceNumber)
			c.send(r)
		case data.SUBMIT_SM:
			f.onSubmit(c, h)
		}
	}
}

func fakePool(t *testing.T, f *fakeSMSC, mut func(*config.Bind)) *testPool {
	t.Helper()
	bc := testBind(t, f.addr(), "f-0")
	if mut != nil {
		mut(&bc)
	}
	p := newTestPool(t, config.Carrier{Name: "f", Binds: []config.Bind{bc}})
	waitUp(t, p)
	return p
}

// The window is never exceeded, with single and multi-part messages.
func TestWindowNeverExceeded(t *testing.T) {
	f := newFakeSMSC(t, nil)
	f.onSubmit = func(c *fakeConn, h pdu.Header) { f.answer(c, h, 3*time.Millisecond, 0) }
	p := fakePool(t, f, func(b *config.Bind) { b.Window = 3 })
	long := strings.Repeat("y", 400)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			for range 8 {
				text := "short"
				if i%3 == 0 {
					text = long // 3 parts
				}
				res := p.Submit(context.Background(), sub(text))
				require.Equal(t, OK, res.Outcome)
				for _, id := range res.CarrierIDs {
					require.NotEmpty(t, id)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(3), f.maxOut.Load(), "window full but never exceeded")
}

// generic_nack is matched like a response.
func TestGenericNackAnswersSubmit(t *testing.T) {
	f := newFakeSMSC(t, nil)
	f.onSubmit = func(c *fakeConn, h pdu.Header) {
		n := pdu.NewGenericNack().(*pdu.GenericNack)
		n.SequenceNumber = h.SequenceNumber
		n.CommandStatus = data.ESME_RINVCMDLEN
		c.send(n)
	}
	p := fakePool(t, f, nil)
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, Permanent, res.Outcome)
	require.Equal(t, uint32(0x02), res.Status)
}

// An unknown command id from the SMSC: generic_nack ESME_RINVCMDID, the
// bind stays up.
func TestUnknownCommandFromSMSC(t *testing.T) {
	f := newFakeSMSC(t, nil)
	p := fakePool(t, f, nil)
	accepts := f.accepts.Load()
	frame := make([]byte, 20)
	binary.BigEndian.PutUint32(frame[0:], 20)
	binary.BigEndian.PutUint32(frame[4:], 0x00010099) // vendor command
	binary.BigEndian.PutUint32(frame[12:], 777)
	f.last().sendRaw(frame)
	waitFor(t, 2*time.Second, "generic_nack", func() bool {
		for _, h := range f.headers() {
			if h.CommandID == data.GENERIC_NACK && h.SequenceNumber == 777 {
				require.Equal(t, data.ESME_RINVCMDID, h.CommandStatus)
				return true
			}
		}
		return false
	})
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
	require.Equal(t, accepts, f.accepts.Load(), "same connection")
	require.True(t, p.Up())
}

// A bad command_length loses framing: the link closes and reconnects.
func TestFramingLostReconnects(t *testing.T) {
	f := newFakeSMSC(t, nil)
	p := fakePool(t, f, nil)
	frame := make([]byte, 16)
	binary.BigEndian.PutUint32(frame[0:], 8) // shorter than a header
	accepts := f.accepts.Load()
	f.last().sendRaw(frame)
	waitFor(t, 2*time.Second, "reconnect", func() bool { return f.accepts.Load() > accepts && p.Up() })
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
}

// A blackholed SMSC (bound, then silent): dead link detected within
// enquire_link + response timeout; requests in flight come back Unknown.
func TestBlackholeDetected(t *testing.T) {
	f := newFakeSMSC(t, nil)
	p := fakePool(t, f, func(b *config.Bind) {
		b.EnquireLink = 100 * time.Millisecond
		b.ResponseTimeout = 150 * time.Millisecond
		b.ReconnectMin = time.Second // stay down long enough to observe
		b.ReconnectMax = time.Second
	})
	f.blackhole.Store(true)
	start := time.Now()
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, Unknown, res.Outcome)
	// The session goes a moment before the state turns to backoff: wait for both.
	waitFor(t, time.Second, "link declared dead", func() bool { return !p.Up() && p.States()[0].State == StateBackoff })
	require.Less(t, time.Since(start), 100*time.Millisecond+150*time.Millisecond+time.Second, "enquire_link + response timeout + scheduling slack (the default interval is 30s)")
}

// A response that never comes: Unknown after the response timeout, the
// bind stays up, a late response is ignored.
func TestResponseTimeoutUnknown(t *testing.T) {
	f := newFakeSMSC(t, nil)
	var first atomic.Bool
	f.onSubmit = func(c *fakeConn, h pdu.Header) {
		if first.CompareAndSwap(false, true) {
			f.answer(c, h, 300*time.Millisecond, 0) // late
			return
		}
		f.answer(c, h, 0, 0)
	}
	p := fakePool(t, f, func(b *config.Bind) { b.ResponseTimeout = 100 * time.Millisecond })
	accepts := f.accepts.Load()
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, Unknown, res.Outcome)
	require.ErrorIs(t, res.Err, ErrTimeout)
	require.Equal(t, 0, p.States()[0].InFlight)
	time.Sleep(250 * time.Millisecond) // the late response arrives and is dropped
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
	require.Equal(t, accepts, f.accepts.Load(), "same connection")
}

// The caller giving up while a submit is in flight gets Unknown; the slot
// comes back when the response arrives.
func TestCallerGivesUp(t *testing.T) {
	f := newFakeSMSC(t, nil)
	f.onSubmit = func(c *fakeConn, h pdu.Header) { f.answer(c, h, 100*time.Millisecond, 0) }
	p := fakePool(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	res := p.Submit(ctx, sub("x"))
	require.Equal(t, Unknown, res.Outcome)
	require.ErrorIs(t, res.Err, context.DeadlineExceeded)
	require.Equal(t, 1, p.States()[0].InFlight)
	waitFor(t, time.Second, "slot freed", func() bool { return p.States()[0].InFlight == 0 })
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, caFile := selfSigned(t, dir)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	f := newFakeSMSC(t, ln)

	p := fakePool(t, f, func(b *config.Bind) { b.TLS, b.TLSCAFile, b.TLSServerName = true, caFile, "smsc.test" })
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)

	// Without the CA the certificate is refused.
	bc := testBind(t, f.addr(), "f-1")
	bc.TLS, bc.TLSServerName = true, "smsc.test"
	p2 := newTestPool(t, config.Carrier{Name: "f2", Binds: []config.Bind{bc}})
	waitFor(t, 2*time.Second, "a failed attempt", func() bool {
		return value(p2.m.reconnects.WithLabelValues("f2", "f-1")) >= 1
	})
	require.False(t, p2.Up())
}

func selfSigned(t *testing.T, dir string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smsc.test"},
		DNSNames:              []string{"smsc.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, certPEM, 0o600))
	return cert, caFile
}

// After a submit_sm goes unanswered the link is suspect: nothing more is
// written until an enquire_link_resp proves it alive, so a blackholed link
// does not swallow a new window of messages (each a possible duplicate).
func TestSuspectLinkSendsNothingUntilProbed(t *testing.T) {
	f := newFakeSMSC(t, nil)
	p := fakePool(t, f, func(b *config.Bind) {
		b.EnquireLink = time.Hour // only the probe sends enquire_link
		b.ResponseTimeout = 100 * time.Millisecond
	})
	f.blackhole.Store(true)
	require.Equal(t, Unknown, p.Submit(context.Background(), sub("x")).Outcome)
	res := p.Submit(context.Background(), sub("y"))
	require.Equal(t, Temporary, res.Outcome)
	require.ErrorIs(t, res.Err, ErrNotSent)
	submits := 0
	for _, h := range f.headers() {
		if h.CommandID == data.SUBMIT_SM {
			submits++
		}
	}
	require.Equal(t, 1, submits, "the second message was not written to the silent link")

	// The SMSC answers again: the probe's response clears the suspicion.
	f.blackhole.Store(false)
	waitFor(t, 2*time.Second, "link usable again or replaced", func() bool {
		return p.Submit(context.Background(), sub("z")).Outcome == OK
	})
}
