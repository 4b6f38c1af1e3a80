package faults_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// Scenario 1b: the daemon is SIGKILLed during an inbound burst and
// restarted: one-part MOs and three-part MOs (UDH, parts spread over the two
// binds) keep arriving before, during and after. Every MO the carrier
// injected reaches the webhook whole (a long MO whose parts straddle the
// crash is joined from the parts stored before it), and none is dropped by
// the carrier. An MO is stored twice (two events, two ids) when the daemon
// stored it but died before its deliver_sm_resp left and the carrier
// delivered it again: at most what the link's inbound workers hold at once,
// a batch each. An event the killed daemon had read may be POSTed again
// under its id.
func TestFaultSIGKILLDuringInbound(t *testing.T) {
	everyRun(t)
	n := envInt(t, envMessages, 2000) / 4
	const nNums = 20

	e := newEnv(t)
	sim := newSim(t, fastCarrier)
	from, _ := numbers(nNums)
	cfg := e.config([]bindSpec{{Addr: sim.Addr()}, {Addr: sim.Addr()}}, from, 5)
	d := startDaemon(t, "gw", cfg)

	long := strings.Repeat("a long reply that needs three parts to arrive whole. ", 7)
	texts := make([]string, n)
	var wg sync.WaitGroup
	injected := make(chan int, n)
	wg.Go(func() {
		for i := range n {
			mo := testharness.MO{From: fmt.Sprintf("+1888%07d", i), To: from[i%nNums], Text: fmt.Sprintf("inbound %d", i)}
			if i%4 == 0 {
				mo.Text, mo.Concat = fmt.Sprintf("inbound %d %s", i, long), "udh"
			}
			texts[i] = mo.Text
			if err := sim.InjectMO(mo); err != nil {
				t.Error(err)
				return
			}
			injected <- i
			time.Sleep(2 * time.Millisecond)
		}
	})
	for range n / 3 {
		<-injected
	}
	d.kill()
	killedAt := time.Now()
	time.Sleep(300 * time.Millisecond)
	d.start()
	wg.Wait()

	// ids[text] holds the event ids the webhook got the MO under, and
	// posts[text] how many POSTs carried it: a POST repeated with the same id
	// (read by the killed daemon, delivered by it or not, and delivered again)
	// is for the receiver to drop; an MO stored twice has two ids.
	received := func() (ids map[string]map[string]bool, posts map[string]int) {
		ids, posts = map[string]map[string]bool{}, map[string]int{}
		for _, ev := range e.sink.Events() {
			if ev.Type != "message.received" {
				continue
			}
			var data struct{ Text string }
			require.NoError(t, json.Unmarshal(ev.Data, &data))
			if ids[data.Text] == nil {
				ids[data.Text] = map[string]bool{}
			}
			ids[data.Text][ev.ID] = true
			posts[data.Text]++
		}
		return ids, posts
	}
	// A long MO taken by the killed daemon between joining its parts and
	// handing it on waits out its hold (queue.MOLease) before it is taken again.
	complete := waitFor(150*time.Second, func() bool {
		ids, _ := received()
		for _, text := range texts {
			if len(ids[text]) == 0 {
				return false
			}
		}
		return true
	})
	ids, posts := received()
	missing, stored2, reposted, fragments := 0, 0, 0, 0
	want := map[string]bool{}
	for _, text := range texts {
		want[text] = true
		switch {
		case len(ids[text]) == 0:
			missing++
		case len(ids[text]) > 1:
			stored2 += len(ids[text]) - 1
		}
		reposted += posts[text] - len(ids[text])
	}
	for text := range ids {
		if !want[text] {
			fragments++
		}
	}
	t.Logf("RESULT inbound-sigkill: %d MOs (%d of three parts) injected, killed after %d; missing %d, fragments %d, stored twice %d, POSTs repeated with the same event id %d; carrier dropped %d; all in %.1fs after the kill",
		n, (n+3)/4, n/3, missing, fragments, stored2, reposted, len(sim.Dropped()), time.Since(killedAt).Seconds())
	require.True(t, complete, "%d of %d MOs never reached the webhook", missing, n)
	require.Zero(t, fragments, "no MO handed on in pieces")
	require.Empty(t, sim.Dropped(), "the carrier gave up on no deliver_sm")
	// 2 binds × 4 inbound workers × a batch of at most smpp.MaxReceiptBatch.
	require.LessOrEqual(t, stored2, 2*4*64, "MOs stored twice bounded by what the workers held at the kill")
}
