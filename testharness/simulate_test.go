package testharness

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

func TestRunSimulate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- RunSimulate(ctx, []string{
			"-listen", "127.0.0.1:0", "-system-id", "carrier", "-password", "pw",
			"-decimal-ids", "-error-rate", "1", "-error-status", "0x14",
		}, pw)
		_ = pw.Close()
	}()
	lines := bufio.NewReader(pr)
	addr, err := lines.ReadString('\n')
	require.NoError(t, err)
	addr = strings.TrimSpace(addr)
	_, _, err = net.SplitHostPort(addr)
	require.NoError(t, err, "first line is the listen address: %q", addr)
	var drained sync.WaitGroup
	drained.Go(func() { _, _ = io.Copy(io.Discard, lines) }) // the log follows

	c := dialSim(t, addr)
	require.Equal(t, StatusInvSysID, c.bind(pdu.Transceiver, "smsgate", "secret").status)
	require.Equal(t, StatusOK, c.bind(pdu.Transceiver, "carrier", "pw").status)
	require.Equal(t, StatusMsgQFul, c.submit("x").status)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(wait):
		t.Fatal("RunSimulate did not stop with its context")
	}
	c.expectClosed(wait)
	drained.Wait()
}

func TestRunSimulateBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-error-status", "nope"},
		{"-error-rate", "2"},
		{"-max-tps", "-1"},
		{"-max-window", "-1"},
		{"-window-status", "x"},
		{"-lost-response-rate", "1.5"},
		{"-deliver-attempts", "0"},
		{"-deliver-attempts", "-2"},
		{"-unknown"},
		{"extra"},
		{"-listen", "256.0.0.1:1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			err := RunSimulate(context.Background(), args, io.Discard)
			require.ErrorContains(t, err, "simulate: ")
		})
	}
}
