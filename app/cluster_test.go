package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// clusterDaemons starts n daemons on one Redis Cluster and key prefix, all
// configured with the same two binds to one simulator.
func clusterDaemons(t *testing.T, n int, cl *testharness.Cluster, sim *testharness.Simulator) []*App {
	t.Helper()
	sink := testharness.NewWebhookSink(t)
	text := configText(sim.Addr(), sink.URL(), "smsgate:", `
  [[org.number]]
  e164 = "+15550002222"
  kind = "long_code"
  registered = true
  rate = 5
`)
	text = strings.Replace(text, `addr = "127.0.0.1:6379"`, `cluster = ["`+strings.Join(cl.Addrs(), `", "`)+`"]`, 1)
	i := strings.Index(text, "  [[carrier.bind]]")
	j := strings.Index(text, "[[route]]")
	bind := text[i:j]
	bind = strings.Replace(bind, `  window = 10`, "  window = 10\n  response_timeout = \"1s\"", 1)
	text = text[:i] + strings.Replace(bind, "[[carrier.bind]]", "[[carrier.bind]]\n  name = \"sim-a\"", 1) +
		strings.Replace(bind, "[[carrier.bind]]", "[[carrier.bind]]\n  name = \"sim-b\"", 1) + text[j:]
	path := filepath.Join(t.TempDir(), "smsgate.toml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	var apps []*App
	for range n {
		apps = append(apps, startSecond(t, path, Options{BindLeaseTTL: 1500 * time.Millisecond}))
	}
	return apps
}

func post(t *testing.T, a *App, from, text string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+a.APIAddr()+"/v1/messages",
		strings.NewReader(fmt.Sprintf(`{"from":%q,"to":"+15557654321","text":%q}`, from, text)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
}

func readyz(a *App) int {
	resp, err := http.Get("http://" + a.APIAddr() + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// submitted returns the simulator's submits of one sender, in order.
func submitted(sim *testharness.Simulator, from string) []testharness.Submit {
	var out []testharness.Submit
	for _, s := range sim.Submits() {
		if "+"+strings.TrimPrefix(s.Source, "+") == from {
			out = append(out, s)
		}
	}
	return out
}

func heldCount(apps ...*App) int {
	n := 0
	for _, a := range apps {
		n += len(*a.leases.view.Load())
	}
	return n
}

// TestClusterDaemons: three daemons on a 3-master Redis Cluster sharing two
// configured binds. Never more than two binds are open; every daemon is
// ready; per-number rate and FIFO hold across daemons; a daemon that dies
// holding binds (no release) loses them to the others within 10 s and no
// accepted message is lost.
func TestClusterDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and three daemons")
	}
	cl := testharness.StartCluster(t, 3, 0)
	sim, err := testharness.NewSimulator(testharness.SimOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	apps := clusterDaemons(t, 3, cl, sim)

	require.Eventually(t, func() bool { return sim.ActiveBinds() == 2 && heldCount(apps...) == 2 }, 10*time.Second, 20*time.Millisecond)
	for i, a := range apps {
		require.Eventually(t, func() bool { return readyz(a) == http.StatusOK }, 5*time.Second, 20*time.Millisecond, "daemon %d ready", i)
	}

	// Per-number FIFO and rate, messages accepted by all three daemons.
	slow, fast := "+15550002222", "+15550001111"
	for i := range 10 {
		post(t, apps[i%3], slow, "s"+strconv.Itoa(i))
	}
	for i := range 30 {
		post(t, apps[i%3], fast, "f"+strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return len(submitted(sim, slow)) >= 10 && len(submitted(sim, fast)) >= 30 },
		10*time.Second, 20*time.Millisecond)
	for _, from := range []string{slow, fast} {
		subs := submitted(sim, from)
		var texts []string
		for _, s := range subs {
			texts = append(texts, string(s.ShortMessage))
		}
		require.True(t, slices.IsSortedFunc(texts, func(a, b string) int {
			x, _ := strconv.Atoi(a[1:])
			y, _ := strconv.Atoi(b[1:])
			return x - y
		}), "%s FIFO: %v", from, texts)
	}
	subs := submitted(sim, slow)
	for i := range subs {
		n := 0
		for j := i; j < len(subs) && subs[j].At.Sub(subs[i].At) < time.Second; j++ {
			n++
		}
		require.LessOrEqual(t, n, 6, "rate 5/s: %d submits in the second after #%d", n, i)
	}
	require.LessOrEqual(t, sim.MaxActiveBinds(), 2, "never more binds than configured")

	// The daemon holding the most binds dies: no release, its binds drop.
	victim := 0
	for i, a := range apps {
		if heldCount(a) > heldCount(apps[victim]) {
			victim = i
		}
	}
	var rest []*App
	for i, a := range apps {
		if i != victim {
			rest = append(rest, a)
		}
	}
	for i := range 40 {
		post(t, rest[i%2], fast, "k"+strconv.Itoa(i))
	}
	died := time.Now()
	apps[victim].leases.halt()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = apps[victim].closePools(ctx)
	require.Eventually(t, func() bool { return heldCount(rest...) == 2 && sim.ActiveBinds() == 2 }, 10*time.Second, 20*time.Millisecond,
		"the others hold every bind within 10 s")
	t.Logf("binds taken over in %s", time.Since(died).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, s := range submitted(sim, fast) {
			seen[string(s.ShortMessage)] = true
		}
		for i := range 40 {
			if !seen["k"+strconv.Itoa(i)] {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "every accepted message sent")
	require.LessOrEqual(t, sim.MaxActiveBinds(), 2, "never more binds than configured")
	for _, a := range rest {
		require.Equal(t, http.StatusOK, readyz(a))
	}
}
