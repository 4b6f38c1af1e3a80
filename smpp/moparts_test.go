package smpp

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

// memParts is a PartStore shared by pools, as Redis is by daemons.
type memParts struct {
	mu  sync.Mutex
	mos map[string]*memMO
}

type memMO struct {
	parts map[int][]byte
	first time.Time
	due   time.Time // when TakeMOs may take it
	held  bool
}

func newMemParts() *memParts { return &memParts{mos: map[string]*memMO{}} }

func (m *memParts) AddMOPart(_ context.Context, carrier, key string, seq, total int, part []byte, timeout time.Duration) (StoredMO, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := carrier + "/" + key
	mo := m.mos[k]
	if mo == nil {
		now := time.Now()
		mo = &memMO{parts: map[int][]byte{}, first: now, due: now.Add(timeout)}
		m.mos[k] = mo
	}
	mo.parts[seq] = part
	if mo.held || len(mo.parts) < total {
		return StoredMO{}, false, nil
	}
	mo.held = true
	return StoredMO{Key: key, First: mo.first, Parts: maps.Clone(mo.parts)}, true, nil
}

func (m *memParts) TakeMOs(_ context.Context, carrier string, n int) ([]StoredMO, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StoredMO
	for k, mo := range m.mos {
		c, key, _ := strings.Cut(k, "/")
		if c != carrier || mo.held || time.Now().Before(mo.due) || len(out) == n {
			continue
		}
		mo.held = true
		out = append(out, StoredMO{Key: key, First: mo.first, Parts: maps.Clone(mo.parts)})
	}
	return out, nil
}

func (m *memParts) DoneMO(_ context.Context, carrier, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mos, carrier+"/"+key)
	return nil
}

func (m *memParts) ReleaseMO(_ context.Context, carrier, key string, drop int, wait time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mo := m.mos[carrier+"/"+key]; mo != nil {
		delete(mo.parts, drop)
		mo.held, mo.due = false, time.Now().Add(wait)
	}
	return nil
}

func newStorePool(t *testing.T, c config.Carrier, store PartStore) *testPool {
	t.Helper()
	h := &recorder{}
	reg := prometheus.NewRegistry()
	p, err := NewPool(PoolOptions{Carrier: c, Handler: h, Registerer: reg, ReassemblyTimeout: 300 * time.Millisecond, Parts: store})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return &testPool{Pool: p, reg: reg, h: h}
}

// The simulator, as SMSCs do, spreads the parts of a long MO over the
// carrier's binds. Held by two daemons (here two pools), the parts meet in
// the shared store and one daemon delivers the whole message; in each
// pool's memory they would be two fragments.
func TestMultipartMOAcrossPools(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond})
	store := newMemParts()
	p1 := newStorePool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}}, store)
	p2 := newStorePool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-1")}}, store)
	waitUp(t, p1)
	waitUp(t, p2)
	long := strings.Repeat("abcdefghij", 30) // 300 characters: 2 parts
	for range 3 {
		require.NoError(t, sim.InjectMO(testharness.MO{From: "15550002222", To: "15550001111", Text: long, Concat: "udh"}))
	}
	all := func() []MO { return append(p1.h.MOs(), p2.h.MOs()...) }
	waitFor(t, 3*time.Second, "three MOs", func() bool { return len(all()) >= 3 })
	time.Sleep(400 * time.Millisecond) // past the reassembly timeout: no fragment follows
	got := all()
	require.Len(t, got, 3)
	for _, m := range got {
		require.Equal(t, long, m.Text)
		require.Equal(t, 2, m.Segments)
	}
}

// An MO whose last part never comes is handed on after the timeout by one
// of the pools, with the parts received.
func TestStoredPartsExpire(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{})
	store := newMemParts()
	p1 := newStorePool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}}, store)
	p2 := newStorePool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-1")}}, store)
	waitUp(t, p1)
	waitUp(t, p2)
	k := assemblyKey{from: "+15550002222", to: "+15550001111", ref: 7, total: 2}
	_, complete, err := store.AddMOPart(context.Background(), "ca", k.storeKey(), 1, 2, moPart{alpha: alphaLatin1, units: []byte("first half")}.encode(), 300*time.Millisecond)
	require.NoError(t, err)
	require.False(t, complete)
	all := func() []MO { return append(p1.h.MOs(), p2.h.MOs()...) }
	waitFor(t, 3*time.Second, "the incomplete MO", func() bool { return len(all()) == 1 })
	time.Sleep(100 * time.Millisecond)
	got := all()
	require.Len(t, got, 1, "handed on once")
	require.Equal(t, MO{From: k.from, To: k.to, Text: "first half", Segments: 1, ReceivedAt: got[0].ReceivedAt, Carrier: "ca"}, got[0])
}

func TestStoreKeyRoundTrip(t *testing.T) {
	for _, k := range []assemblyKey{
		{from: "+15550002222", to: "+15550001111", ref: 65535, ref16: true, sar: false, total: 255},
		{from: "", to: "12345", ref: 0, sar: true, total: 2},
		{from: "odd|address %", to: "+1 555", ref: 1, total: 3},
	} {
		got, err := parseStoreKey(k.storeKey())
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
	for _, bad := range []string{"", "a|b|c", "a|b|x|false|false|2", "a|b|1|maybe|false|2", "a|b|1|false|false|256"} {
		_, err := parseStoreKey(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseStoreKey(f *testing.F) {
	f.Add("+15550002222|+15550001111|7|false|false|2")
	f.Add("a|b|65535|true|true|255")
	f.Add("|||||")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseStoreKey(s)
		if err != nil {
			return
		}
		// What parses writes back to a key that parses to the same fields.
		again, err := parseStoreKey(k.storeKey())
		if err != nil || again != k {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, k, k.storeKey(), again, err)
		}
	})
}
