package smpp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

// vector builds a submit_sm by hand: header (sequence 0) + the fields in
// SMPP 3.4 order, so the test does not depend on the codec under test.
func vector(esm, dc byte, validity string, sm []byte, tlvs ...[]byte) []byte {
	var body bytes.Buffer
	body.WriteByte(0)                   // service_type ""
	body.Write([]byte{1, 1})            // source ton, npi
	body.WriteString("15550001111\x00") // source_addr
	body.Write([]byte{1, 1})            // dest ton, npi
	body.WriteString("15550002222\x00") // destination_addr
	body.Write([]byte{esm, 0, 0})       // esm_class, protocol_id, priority_flag
	body.WriteByte(0)                   // schedule_delivery_time ""
	body.WriteString(validity + "\x00") // validity_period
	body.Write([]byte{1, 0, dc, 0})     // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
	body.WriteByte(byte(len(sm)))       // sm_length
	body.Write(sm)                      // short_message
	for _, t := range tlvs {
		body.Write(t)
	}
	out := make([]byte, 16, 16+body.Len())
	binary.BigEndian.PutUint32(out[0:], uint32(16+body.Len()))
	binary.BigEndian.PutUint32(out[4:], 0x00000004)
	out = append(out, body.Bytes()...)
	return out
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

func TestBuildSubmitsByteExact(t *testing.T) {
	valid := time.Date(2026, 1, 2, 15, 4, 5, 0, time.FixedZone("x", 3600)) // 14:04:05 UTC
	base := Submission{From: "+15550001111", To: "+15550002222"}
	a153 := strings.Repeat("a", 153)

	tests := []struct {
		name string
		s    Submission
		w    wireOptions
		ref  uint16
		want [][]byte
	}{
		{
			name: "gsm7 single unpacked with validity",
			s:    Submission{From: base.From, To: base.To, Text: "Hi", Encoding: message.EncodingGSM7, ValidUntil: valid},
			w:    wireOptions{long: LongUDH},
			want: [][]byte{vector(0, 0, "260102140405000+", unhex(t, "4869"))},
		},
		{
			name: "gsm7 single packed",
			s:    Submission{From: base.From, To: base.To, Text: "Hi", Encoding: message.EncodingGSM7},
			w:    wireOptions{long: LongUDH, packed: true},
			want: [][]byte{vector(0, 0, "", unhex(t, "C834"))},
		},
		{
			name: "gsm7 extension char is escape + char",
			s:    Submission{From: base.From, To: base.To, Text: "€", Encoding: message.EncodingGSM7},
			w:    wireOptions{long: LongUDH},
			want: [][]byte{vector(0, 0, "", unhex(t, "1B65"))},
		},
		{
			name: "ucs2 single",
			s:    Submission{From: base.From, To: base.To, Text: "é😀", Encoding: message.EncodingUCS2},
			w:    wireOptions{long: LongUDH},
			want: [][]byte{vector(0, 8, "", unhex(t, "00E9 D83D DE00"))},
		},
		{
			name: "encoding chosen by Analyze",
			s:    Submission{From: base.From, To: base.To, Text: "Ж"},
			w:    wireOptions{long: LongUDH},
			want: [][]byte{vector(0, 8, "", unhex(t, "0416"))},
		},
		{
			name: "gsm7 two parts udh 8-bit reference",
			s:    Submission{From: base.From, To: base.To, Text: a153 + "aaaaaaaHi", Encoding: message.EncodingGSM7},
			w:    wireOptions{long: LongUDH},
			ref:  0x1234,
			want: [][]byte{
				vector(0x40, 0, "", append(unhex(t, "050003340201"), bytes.Repeat([]byte{0x61}, 153)...)),
				vector(0x40, 0, "", unhex(t, "050003340202 61616161616161 4869")),
			},
		},
		{
			name: "gsm7 two parts udh packed with one fill bit",
			s:    Submission{From: base.From, To: base.To, Text: a153 + "aaaaaaaHi", Encoding: message.EncodingGSM7},
			w:    wireOptions{long: LongUDH, packed: true},
			ref:  7,
			want: [][]byte{
				nil, // first part checked by length only below
				vector(0x40, 0, "", unhex(t, "050003070202 c2e170381c0e23d3")),
			},
		},
		{
			name: "message_payload",
			s:    Submission{From: base.From, To: base.To, Text: a153 + "Hi", Encoding: message.EncodingGSM7},
			w:    wireOptions{long: LongPayload},
			want: [][]byte{vector(0, 0, "", nil, append(unhex(t, "0424 009B"), append(bytes.Repeat([]byte{0x61}, 153), 0x48, 0x69)...))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildSubmits(tt.s, tt.w, tt.ref)
			require.NoError(t, err)
			require.Len(t, got, len(tt.want))
			for i := range got {
				if tt.want[i] == nil {
					continue
				}
				require.Equal(t, hex.EncodeToString(tt.want[i]), hex.EncodeToString(got[i]), "part %d", i+1)
			}
		})
	}
}

func TestBuildSubmitsSAR(t *testing.T) {
	text := strings.Repeat("ж", 71) // 71 UCS-2 units: 2 parts of 67 + 4
	frames, err := buildSubmits(Submission{From: "Acme", To: "+15550002222", Text: text, Encoding: message.EncodingUCS2}, wireOptions{long: LongSAR}, 0xBEEF)
	require.NoError(t, err)
	require.Len(t, frames, 2)
	for i, f := range frames {
		p := pdu.NewSubmitSM().(*pdu.SubmitSM)
		require.NoError(t, p.Unmarshal(pdu.NewBuffer(f)))
		require.Equal(t, byte(0), p.EsmClass&0x40, "no UDHI with SAR")
		require.Equal(t, byte(5), p.SourceAddr.Ton(), "alphanumeric sender")
		require.Equal(t, "Acme", p.SourceAddr.Address())
		require.Equal(t, byte(1), p.RegisteredDelivery)
		require.Equal(t, []byte{0xBE, 0xEF}, p.OptionalParameters[pdu.TagSarMsgRefNum].Data)
		require.Equal(t, []byte{2}, p.OptionalParameters[pdu.TagSarTotalSegments].Data)
		require.Equal(t, []byte{byte(i + 1)}, p.OptionalParameters[pdu.TagSarSegmentSeqnum].Data)
		ud, _ := p.Message.GetMessageData()
		want := 67 * 2
		if i == 1 {
			want = 4 * 2
		}
		require.Len(t, ud, want)
		require.Equal(t, []byte{0x04, 0x36}, ud[:2])
	}
}

func TestBuildSubmitsErrors(t *testing.T) {
	_, err := buildSubmits(Submission{From: "+1555", To: "+" + strings.Repeat("1", 30), Text: "x"}, wireOptions{long: LongUDH}, 0)
	require.ErrorContains(t, err, "destination address")
}

func TestFormatAbsoluteTime(t *testing.T) {
	ts := time.Date(2031, 12, 31, 23, 59, 58, 999, time.UTC)
	require.Equal(t, "311231235958000+", FormatAbsoluteTime(ts))
	require.Len(t, FormatAbsoluteTime(ts), 16)
}

func TestFillBits(t *testing.T) {
	require.Equal(t, 1, fillBits(6))
	require.Equal(t, 0, fillBits(7))
	require.Equal(t, 6, fillBits(1))
}
