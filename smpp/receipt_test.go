package smpp

import (
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

func TestParseReceiptText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want ReceiptText
		ok   bool
	}{
		{
			name: "standard",
			in:   "id:0123456789 sub:001 dlvrd:001 submit date:2601021504 done date:2601021505 stat:DELIVRD err:000 text:Hello world",
			want: ReceiptText{ID: "0123456789", Sub: "001", Dlvrd: "001", SubmitDate: "2601021504", DoneDate: "2601021505", Stat: "DELIVRD", Err: "000", Text: "Hello world"},
			ok:   true,
		},
		{
			name: "order, case and missing fields",
			in:   "Stat:undeliv ID:ab12 Err:005 Done Date:260102150455",
			want: ReceiptText{ID: "ab12", Stat: "UNDELIV", Err: "005", DoneDate: "260102150455"},
			ok:   true,
		},
		{
			name: "numeric state (the message_state value)",
			in:   "id:7 stat:2 err:000",
			want: ReceiptText{ID: "7", Stat: "DELIVRD", Err: "000"},
			ok:   true,
		},
		{
			name: "numeric state undeliverable",
			in:   "id:8 stat:5",
			want: ReceiptText{ID: "8", Stat: "UNDELIV"},
			ok:   true,
		},
		{
			name: "underscored dates and long state",
			in:   "id:7 submit_date:2601021504 done_date:2601021505 stat:DELIVERED",
			want: ReceiptText{ID: "7", SubmitDate: "2601021504", DoneDate: "2601021505", Stat: "DELIVRD"},
			ok:   true,
		},
		{
			name: "text before other fields",
			in:   "id:9 text:hi there stat:EXPIRED",
			want: ReceiptText{ID: "9", Text: "hi there", Stat: "EXPIRED"},
			ok:   true,
		},
		{
			name: "key inside a word is not a key",
			in:   "id:5 substat:x stat:ACCEPTD",
			want: ReceiptText{ID: "5", Stat: "ACCEPTD"},
			ok:   true,
		},
		{name: "no id", in: "stat:DELIVRD err:000", want: ReceiptText{}, ok: false},
		{name: "empty", in: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseReceiptText(tt.in)
			require.Equal(t, tt.ok, ok)
			if ok {
				require.Equal(t, tt.want, got)
			}
		})
	}
}

func TestParseReceiptTextFixtures(t *testing.T) {
	b, err := os.ReadFile("testdata/receipts.txt")
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		want, text, _ := strings.Cut(line, "|")
		r, ok := ParseReceiptText(text)
		require.True(t, ok, text)
		require.Equal(t, want, r.ID+" "+r.Stat+" "+r.Err, text)
	}
}

func FuzzParseReceiptText(f *testing.F) {
	f.Add("id:0123456789 sub:001 dlvrd:001 submit date:2601021504 done date:2601021505 stat:DELIVRD err:000 text:Hello")
	f.Add("Stat:undeliv ID:ab12 Err:005")
	f.Add("id: stat: err: text:")
	f.Add("id:1 text:id:2 stat:x")
	f.Add("İd:1 STAT:x")
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := ParseReceiptText(s)
		if !ok {
			return
		}
		for _, v := range []string{r.ID, r.Sub, r.Dlvrd, r.SubmitDate, r.DoneDate, r.Err} {
			if strings.ContainsAny(v, " \t\r\n") {
				t.Fatalf("value with whitespace %q in %q", v, s)
			}
			if !strings.Contains(s, v) {
				t.Fatalf("value %q not from input %q", v, s)
			}
		}
		if utf8.ValidString(s) && !utf8.ValidString(r.ID) {
			t.Fatalf("invalid utf8 id from valid input")
		}
		_, _ = parseReceiptDate(r.DoneDate)
	})
}

// deliverFrame marshals a deliver_sm like an SMSC would.
func deliverFrame(t testing.TB, esm, dc byte, sm []byte, tlvs map[pdu.Tag][]byte) []byte {
	t.Helper()
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.SetSequenceNumber(42)
	var err error
	d.SourceAddr, err = pdu.NewAddressWithTonNpiAddr(1, 1, "15550002222")
	require.NoError(t, err)
	d.DestAddr, err = pdu.NewAddressWithTonNpiAddr(1, 1, "15550001111")
	require.NoError(t, err)
	d.EsmClass = esm
	enc := data.FromDataCoding(dc)
	if enc == nil {
		enc = data.BINARY8BIT2
	}
	require.NoError(t, d.Message.SetMessageDataWithEncoding(sm, enc))
	for tag, v := range tlvs {
		d.RegisterOptionalParam(pdu.Field{Tag: tag, Data: v})
	}
	f := marshal(d)
	if enc == data.BINARY8BIT2 { // patch the real data_coding
		_, dcOff, err := deliverOffsets(f)
		require.NoError(t, err)
		f[dcOff] = dc
	}
	return f
}

func TestDecodeReceipt(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	text := []byte("id:1e240 sub:001 dlvrd:000 submit date:2601021504 done date:2601021505 stat:UNDELIV err:012 text:x")
	tests := []struct {
		name string
		esm  byte
		sm   []byte
		tlvs map[pdu.Tag][]byte
		want Receipt
	}{
		{
			name: "text only",
			esm:  0x04, sm: text,
			want: Receipt{CarrierMessageID: "1e240", State: "UNDELIV", Err: "012", DoneAt: time.Date(2026, 1, 2, 15, 5, 0, 0, time.UTC)},
		},
		{
			name: "TLVs win over text",
			esm:  0x04, sm: text,
			tlvs: map[pdu.Tag][]byte{
				pdu.TagReceiptedMessageID: []byte("123456\x00"),
				pdu.TagMessageStateOption: {2},
				pdu.TagNetworkErrorCode:   {3, 0x01, 0x02},
			},
			want: Receipt{CarrierMessageID: "123456", State: "DELIVRD", Err: "258", DoneAt: time.Date(2026, 1, 2, 15, 5, 0, 0, time.UTC)},
		},
		{
			name: "TLVs only, no esm_class flag",
			tlvs: map[pdu.Tag][]byte{pdu.TagReceiptedMessageID: []byte("ab"), pdu.TagMessageStateOption: {3}},
			want: Receipt{CarrierMessageID: "ab", State: "EXPIRED", DoneAt: now},
		},
		{
			name: "receipt text without esm_class flag",
			sm:   text,
			want: Receipt{CarrierMessageID: "1e240", State: "UNDELIV", Err: "012", DoneAt: time.Date(2026, 1, 2, 15, 5, 0, 0, time.UTC)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := parseDeliverSM(deliverFrame(t, tt.esm, 0, tt.sm, tt.tlvs))
			require.NoError(t, err)
			require.True(t, isReceipt(in))
			got, ok := decodeReceipt(in, now)
			require.True(t, ok)
			require.Equal(t, tt.want, got)
		})
	}
	in, err := parseDeliverSM(deliverFrame(t, 0, 0, []byte("hello id:1 stat:x"), nil))
	require.NoError(t, err)
	require.False(t, isReceipt(in), "an MO mentioning id: is not a receipt")
}
