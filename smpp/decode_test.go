package smpp

import (
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

func TestDecodeMOPart(t *testing.T) {
	gsm, ok := message.EncodeGSM7("Hi €")
	require.True(t, ok)
	tests := []struct {
		name   string
		esm    byte
		dc     byte
		sm     []byte
		tlvs   map[pdu.Tag][]byte
		packed bool
		text   string
		ci     concatInfo
		concat bool
	}{
		{name: "gsm7 unpacked", dc: 0, sm: gsm, text: "Hi €"},
		{name: "gsm7 packed", dc: 0, sm: message.PackGSM7(gsm, 0), packed: true, text: "Hi €"},
		{name: "latin1", dc: 3, sm: []byte{'c', 'a', 'f', 0xE9}, text: "café"},
		{name: "ia5 as latin1", dc: 1, sm: []byte("abc"), text: "abc"},
		{name: "ucs2", dc: 8, sm: []byte{0x04, 0x16, 0xD8, 0x3D, 0xDE, 0x00}, text: "Ж😀"},
		{name: "message_payload", dc: 0, tlvs: map[pdu.Tag][]byte{pdu.TagMessagePayload: gsm}, text: "Hi €"},
		{
			name: "udh 8-bit", esm: 0x40, dc: 0, sm: append([]byte{5, 0, 3, 0xAB, 3, 2}, gsm...),
			text: "Hi €", ci: concatInfo{ref: 0xAB, total: 3, seq: 2}, concat: true,
		},
		{
			name: "udh 16-bit", esm: 0x40, dc: 8, sm: []byte{6, 8, 4, 0x12, 0x34, 2, 1, 0, 'A'},
			text: "A", ci: concatInfo{ref: 0x1234, ref16: true, total: 2, seq: 1}, concat: true,
		},
		{
			name: "udh packed with fill bits", esm: 0x40, dc: 0, packed: true,
			sm:   append([]byte{5, 0, 3, 1, 2, 2}, message.PackGSM7(gsm, 1)...),
			text: "Hi €", ci: concatInfo{ref: 1, total: 2, seq: 2}, concat: true,
		},
		{
			name: "sar", dc: 0, sm: gsm,
			tlvs: map[pdu.Tag][]byte{pdu.TagSarMsgRefNum: {0, 9}, pdu.TagSarTotalSegments: {2}, pdu.TagSarSegmentSeqnum: {2}},
			text: "Hi €", ci: concatInfo{ref: 9, ref16: true, sar: true, total: 2, seq: 2}, concat: true,
		},
		{name: "udh without concat IE", esm: 0x40, dc: 0, sm: append([]byte{3, 0x24, 1, 0}, gsm...), text: "Hi €"},
		{name: "malformed udh read as text", esm: 0x40, dc: 3, sm: []byte{9, 'a', 'b'}, text: "\tab"},
		{name: "bad sar seq ignored", dc: 3, sm: []byte("x"), tlvs: map[pdu.Tag][]byte{pdu.TagSarMsgRefNum: {0, 9}, pdu.TagSarTotalSegments: {2}, pdu.TagSarSegmentSeqnum: {3}}, text: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := parseDeliverSM(deliverFrame(t, tt.esm, tt.dc, tt.sm, tt.tlvs))
			require.NoError(t, err)
			require.Equal(t, tt.esm, in.esm)
			require.Equal(t, tt.dc, in.dc)
			require.False(t, isReceipt(in))
			p, ci, concat := decodeMOPart(in, tt.packed)
			require.Equal(t, tt.text, p.text())
			require.Equal(t, tt.concat, concat)
			require.Equal(t, tt.ci, ci)
			require.Equal(t, "+15550002222", fromWireAddress(in.d.SourceAddr))
		})
	}
}

func TestParseDeliverSMErrors(t *testing.T) {
	f := deliverFrame(t, 0, 0, []byte("x"), nil)
	_, err := parseDeliverSM(f[:20])
	require.Error(t, err)
	bad := append([]byte(nil), f...)
	bad[len(bad)-2] = 200 // sm_length beyond the PDU
	_, err = parseDeliverSM(bad)
	require.Error(t, err)
}

func FuzzParseDeliverSM(f *testing.F) {
	f.Add(deliverFrame(f, 0x40, 0, []byte{5, 0, 3, 1, 2, 1, 'a'}, nil))
	f.Add(deliverFrame(f, 0x04, 0, []byte("id:1 stat:DELIVRD"), map[pdu.Tag][]byte{pdu.TagMessageStateOption: {2}}))
	f.Add(deliverFrame(f, 0, 8, []byte{0xD8}, map[pdu.Tag][]byte{pdu.TagSarMsgRefNum: {0, 1}, pdu.TagSarTotalSegments: {2}, pdu.TagSarSegmentSeqnum: {1}}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 16 {
			return
		}
		in, err := parseDeliverSM(frame)
		if err != nil {
			return
		}
		if isReceipt(in) {
			_, _ = decodeReceipt(in, time.Now())
			return
		}
		for _, packed := range []bool{false, true} {
			p, ci, concat := decodeMOPart(in, packed)
			_ = p.text()
			if concat && (ci.seq == 0 || ci.seq > ci.total || ci.total < 2) {
				t.Fatalf("bad concat info %+v", ci)
			}
		}
	})
}

func TestReassembler(t *testing.T) {
	r := newReassembler(time.Minute)
	now := time.Now()
	k := assemblyKey{from: "+1", to: "+2", ref: 7, total: 3}
	part := func(s string) moPart { return moPart{alpha: alphaLatin1, units: []byte(s)} }

	require.Nil(t, r.add(k, 3, part("c"), "b1", now))
	require.Nil(t, r.add(k, 1, part("a"), "b1", now))
	require.Nil(t, r.add(k, 1, part("a"), "b1", now), "duplicate part")
	a := r.add(k, 2, part("b"), "b2", now)
	require.NotNil(t, a)
	require.Equal(t, "abc", joinParts(a.parts))
	require.Equal(t, 0, r.pending())

	// Handler failed on the completing part: the others are kept.
	r.restore(a, 2)
	require.Equal(t, 1, r.pending())
	a = r.add(k, 2, part("b"), "b2", now)
	require.NotNil(t, a)
	require.Equal(t, "abc", joinParts(a.parts))

	// Timeout hands over what arrived.
	require.Nil(t, r.add(k, 1, part("a"), "b1", now))
	require.Nil(t, r.add(k, 3, part("c"), "b1", now))
	require.Empty(t, r.expired(now.Add(59*time.Second), false))
	exp := r.expired(now.Add(time.Minute), false)
	require.Len(t, exp, 1)
	require.Equal(t, "ac", joinParts(exp[0].received()))
	require.Equal(t, 0, r.pending())
}

func TestJoinPartsAcrossBoundary(t *testing.T) {
	// A surrogate pair split across two UCS-2 parts, and an escape split
	// across two GSM-7 parts, decode as one character.
	u := []moPart{{alpha: alphaUCS2, units: []byte{0xD8, 0x3D}}, {alpha: alphaUCS2, units: []byte{0xDE, 0x00}}}
	require.Equal(t, "😀", joinParts(u))
	g := []moPart{{alpha: alphaGSM7, units: []byte{'a', 0x1B}}, {alpha: alphaGSM7, units: []byte{0x65}}}
	require.Equal(t, "a€", joinParts(g))
}

func TestAlphabetOf(t *testing.T) {
	require.Equal(t, alphaGSM7, alphabetOf(0))
	require.Equal(t, alphaLatin1, alphabetOf(1))
	require.Equal(t, alphaLatin1, alphabetOf(3))
	require.Equal(t, alphaUCS2, alphabetOf(8))
	require.Equal(t, alphaGSM7, alphabetOf(0xF0))
	require.Equal(t, alphaLatin1, alphabetOf(0xF4))
	require.Equal(t, alphaUCS2, alphabetOf(0x18))
	require.Equal(t, alphaLatin1, alphabetOf(0x04))
}
