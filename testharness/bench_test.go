package testharness

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

// BenchmarkSimulatorSubmit pipelines b.N submit_sm on one transmitter bind
// (pre-encoded, sequence numbers patched) and reads every submit_sm_resp:
// the simulator's throughput on one connection.
func BenchmarkSimulatorSubmit(b *testing.B) {
	sim := startSim(b, SimOptions{}) // default recording: the first 100000 PDUs and submits
	nc, err := net.Dial("tcp", sim.Addr())
	require.NoError(b, err)
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 64<<10)
	readPDU := func() (cmdID, status uint32) {
		var hdr [16]byte
		_, err := io.ReadFull(r, hdr[:])
		require.NoError(b, err)
		n := binary.BigEndian.Uint32(hdr[:])
		_, err = r.Discard(int(n) - 16)
		require.NoError(b, err)
		return binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint32(hdr[8:])
	}
	bind := pdu.NewBindRequest(pdu.Transmitter)
	bind.SystemID, bind.Password = DefaultSystemID, DefaultPassword
	_, err = nc.Write(marshal(bind))
	require.NoError(b, err)
	_, st := readPDU()
	require.Equal(b, StatusOK, st)

	tmpl := marshal(newSubmit(b, "15550001111", "15557654321", "benchmark message text"))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(nc, 64<<10)
		frame := append([]byte(nil), tmpl...)
		for i := range b.N {
			binary.BigEndian.PutUint32(frame[12:], uint32(i+1))
			if _, err := w.Write(frame); err != nil {
				errc <- err
				return
			}
		}
		errc <- w.Flush()
	}()
	for range b.N {
		cmdID, status := readPDU()
		if cmdID != cmdSubmitSMResp || status != StatusOK {
			b.Fatalf("got 0x%08x status 0x%x", cmdID, status)
		}
	}
	require.NoError(b, <-errc)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "submit/s")
}
