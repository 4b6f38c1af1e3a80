package testharness

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

// FuzzScanSM checks the raw submit_sm/deliver_sm walker never reads out of
// bounds and agrees with the gosmpp codec on what both can parse.
func FuzzScanSM(f *testing.F) {
	s := newSubmit(f, "1555", "1666", "hello", withRegDelivery(1))
	f.Add(marshal(s)[16:])
	u := newSubmit(f, "1", "2", "", withRawUDH([]byte{5, 0, 3, 1, 2, 1, 'h', 'i'}))
	f.Add(marshal(u)[16:])
	f.Add([]byte{0, 1, 1, '1'})
	f.Fuzz(func(t *testing.T, body []byte) {
		raw, err := scanSM(body)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(raw.sm), 255)
		frame := encodePDU(cmdSubmitSM, 0, 1, body)
		p, perr := decodeFrame(frame)
		if perr != nil {
			return
		}
		sm := p.(*pdu.SubmitSM)
		require.Equal(t, sm.EsmClass, raw.esmClass)
		require.Equal(t, sm.RegisteredDelivery, raw.regDelivery)
		d, _ := sm.Message.GetMessageData()
		require.True(t, len(d) <= len(raw.sm))
	})
}

// FuzzSimulatorPDU sends one arbitrary PDU body under each interesting
// command_id to a bound connection: the simulator must not crash, and unless
// the PDU ended the session the connection must still answer enquire_link.
func FuzzSimulatorPDU(f *testing.F) {
	sim := startSim(f, SimOptions{RecordLimit: -1})
	f.Add(cmdSubmitSM, marshal(newSubmit(f, "1", "2", "x"))[16:])
	f.Add(cmdSubmitSM, []byte{0, 1, 1})
	f.Add(uint32(0x99), []byte{})
	f.Add(cmdBindTransceiver, []byte("smsgate\x00secret\x00\x00\x34\x00\x00\x00"))
	f.Add(cmdDeliverSMResp, []byte{})
	f.Add(cmdGenericNack, []byte{1})
	f.Fuzz(func(t *testing.T, cmdID uint32, body []byte) {
		if len(body) > 1<<16-16 || cmdID == cmdUnbind {
			return
		}
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		c.writeRaw(encodePDU(cmdID, 0, 1000, body))
		seq := c.send(pdu.NewEnquireLink())
		for { // the fuzzed PDU may itself be an enquire_link (seq 1000)
			if rx := c.expect(cmdEnquireLinkResp, 2*time.Second); rx.seq == seq {
				break
			}
		}
		c.close()
	})
}

func TestEncodePDU(t *testing.T) {
	b := encodePDU(cmdSubmitSMResp, StatusThrottled, 7, []byte("ab\x00"))
	require.Len(t, b, 19)
	require.Equal(t, uint32(19), binary.BigEndian.Uint32(b))
	require.Equal(t, cmdSubmitSMResp, binary.BigEndian.Uint32(b[4:]))
	require.Equal(t, StatusThrottled, binary.BigEndian.Uint32(b[8:]))
	require.Equal(t, uint32(7), binary.BigEndian.Uint32(b[12:]))
	p, err := decodeFrame(b)
	require.NoError(t, err)
	require.Equal(t, "ab", p.(*pdu.SubmitSMResp).MessageID)
}
