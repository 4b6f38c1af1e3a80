package testharness

import (
	"strconv"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

func TestReceiptIDForms(t *testing.T) {
	tests := []struct {
		name    string
		decimal bool
		form    string
		tlv     bool
		text    func(id string) string // expected id in the receipt text
	}{
		{"hex default", false, "", true, func(id string) string { return id }},
		{"decimal default", true, "", true, func(id string) string { return id }},
		{"text only", false, "text", false, func(id string) string { return id }},
		{"hex as decimal", false, "decimal", false, func(id string) string {
			n, err := strconv.ParseUint(id, 16, 64)
			require.NoError(t, err)
			return strconv.FormatUint(n, 10)
		}},
		{"decimal as hex", true, "hex", false, func(id string) string {
			n, err := strconv.ParseUint(id, 10, 64)
			require.NoError(t, err)
			return strconv.FormatUint(n, 16)
		}},
		{"trailing NUL", false, "nul", false, func(id string) string { return id + "\x00" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := startSim(t, SimOptions{DecimalIDs: tt.decimal, Faults: Faults{ReceiptID: tt.form}})
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transceiver)
			rx := c.submit("hello", withRegDelivery(1))
			require.Equal(t, StatusOK, rx.status)
			id := messageID(t, rx)
			if !tt.decimal {
				require.Regexp(t, `[a-f]`, id, "hex ids always hold a letter")
			}
			d, raw := deliverSM(t, c.expect(cmdDeliverSM, wait))
			m := receiptRE.FindStringSubmatch(string(raw.sm))
			require.NotNil(t, m, "receipt text %q", raw.sm)
			require.Equal(t, tt.text(id), m[1])
			v, ok := tlv(d, TagReceiptedMessageID)
			require.Equal(t, tt.tlv, ok)
			if ok {
				require.Equal(t, append([]byte(id), 0), v)
			}
		})
	}
}

func TestReceiptFirst(t *testing.T) {
	sim := startSim(t, SimOptions{Faults: Faults{ReceiptFirst: true}})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	seq := c.send(newSubmit(t, "15550001111", "15557654321", "early", withRegDelivery(1)))
	first := c.expect(cmdDeliverSM, wait)
	require.Empty(t, c.held, "the receipt comes before the submit_sm_resp")
	resp := c.expect(cmdSubmitSMResp, wait)
	require.Equal(t, seq, resp.seq)
	d, _ := deliverSM(t, first)
	v, _ := tlv(d, TagReceiptedMessageID)
	require.Equal(t, append([]byte(messageID(t, resp)), 0), v)
}

func TestSendReceipt(t *testing.T) {
	sim := startSim(t, SimOptions{Faults: Faults{NoReceipts: true}})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	udh := []byte{0x05, 0x00, 0x03, 0x07, 0x02, 0x01}
	rx := c.submit("", withRawUDH(append(udh, []byte("part one")...)), withRegDelivery(1))
	require.Equal(t, StatusOK, rx.status)
	c.expectNone(cmdDeliverSM, 50*time.Millisecond)

	subs := sim.Submits()
	require.Len(t, subs, 1)
	require.Error(t, sim.SendReceipt(Submit{}, "", ""), "a refused submit has no id")
	require.NoError(t, sim.SendReceipt(subs[0], "UNDELIV", "012"))
	d, raw := deliverSM(t, c.expect(cmdDeliverSM, wait))
	m := receiptRE.FindStringSubmatch(string(raw.sm))
	require.NotNil(t, m, "receipt text %q", raw.sm)
	require.Equal(t, subs[0].MessageID, m[1])
	require.Equal(t, "UNDELIV", m[5])
	require.Equal(t, "012", m[6])
	require.Equal(t, "part one", m[7])
	require.Equal(t, "15557654321", d.SourceAddr.Address())
	v, _ := tlv(d, TagMessageState)
	require.Equal(t, []byte{5}, v)
}
