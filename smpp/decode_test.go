package smpp

import (
	"bytes"
	"encoding/binary"
	"errors"
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
		if in, err := parseDeliverSM(frame); err == nil {
			checkInbound(t, in)
		}
	})
}

func FuzzParseDataSM(f *testing.F) {
	f.Add(dataFrame(f, 0x40, 0, map[pdu.Tag][]byte{tagMessagePayload: {5, 0, 3, 1, 2, 1, 'a'}}))
	f.Add(dataFrame(f, 0x04, 0, map[pdu.Tag][]byte{pdu.TagReceiptedMessageID: []byte("1a\x00"), pdu.TagMessageStateOption: {2}}))
	f.Add(dataFrame(f, 0, 8, map[pdu.Tag][]byte{tagMessagePayload: {0xD8}, pdu.TagSarMsgRefNum: {0, 1}, pdu.TagSarTotalSegments: {2}, pdu.TagSarSegmentSeqnum: {1}}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 16 {
			return
		}
		if in, err := parseDataSM(frame); err == nil {
			if !in.dataSM {
				t.Fatal("a data_sm not marked as one")
			}
			checkInbound(t, in)
		}
	})
}

// checkInbound decodes in as the link's workers would and checks what they rely on.
func checkInbound(t *testing.T, in inboundPDU) {
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
}

// dataFrame builds a data_sm frame from 1234 to 5678.
func dataFrame(tb testing.TB, esm, dc byte, tlvs map[pdu.Tag][]byte) []byte {
	tb.Helper()
	d := pdu.NewDataSM().(*pdu.DataSM)
	d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "1234")
	d.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "5678")
	d.EsmClass, d.DataCoding = esm, dc
	for tag, v := range tlvs {
		d.RegisterOptionalParam(pdu.Field{Tag: tag, Data: v})
	}
	d.SetSequenceNumber(7)
	return marshal(d)
}

// TestParseDataSM: a data_sm's fields, TLVs and payload arrive as its
// deliver_sm equivalent would.
func TestParseDataSM(t *testing.T) {
	tests := []struct {
		name    string
		frame   []byte
		receipt bool
		text    string
		state   string
	}{
		{name: "MO in message_payload", frame: dataFrame(t, 0, 0, map[pdu.Tag][]byte{tagMessagePayload: []byte("STOP")}), text: "STOP"},
		{name: "receipt by TLVs only", frame: dataFrame(t, 0x04, 0, map[pdu.Tag][]byte{pdu.TagReceiptedMessageID: []byte("1a2b\x00"), pdu.TagMessageStateOption: {2}}),
			receipt: true, state: "DELIVRD"},
		{name: "receipt text in message_payload", frame: dataFrame(t, 0x04, 0, map[pdu.Tag][]byte{tagMessagePayload: []byte("id:1a2b sub:001 dlvrd:000 submit date:2611300200 done date:2611300201 stat:UNDELIV err:012 text:x")}),
			receipt: true, state: "UNDELIV"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := parseDataSM(tc.frame)
			require.NoError(t, err)
			require.True(t, in.dataSM)
			require.Equal(t, int32(7), in.d.SequenceNumber)
			require.Equal(t, "1234", in.d.SourceAddr.Address())
			require.Equal(t, "5678", in.d.DestAddr.Address())
			require.Equal(t, tc.receipt, in.receipt)
			if tc.receipt {
				r, ok := decodeReceipt(in, time.Now())
				require.True(t, ok)
				require.Equal(t, "1a2b", r.CarrierMessageID)
				require.Equal(t, tc.state, r.State)
				return
			}
			p, _, concat := decodeMOPart(in, false)
			require.False(t, concat)
			require.Equal(t, tc.text, p.text())
		})
	}
	truncated := dataFrame(t, 0, 0, nil)[:20] // cut inside the destination address
	truncated[3] = 20                         // command_length
	_, err := parseDataSM(truncated)
	require.Error(t, err, "a truncated data_sm is refused")
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

// Undecodable deliver_sm and data_sm are refused with a permanent status
// chosen by what is wrong (refusalStatus).
func TestRefusalStatus(t *testing.T) {
	good := deliverFrame(t, 0, 0, []byte("hi"), nil)
	tail := func(frame []byte, b ...byte) []byte {
		out := append(append([]byte(nil), frame...), b...)
		binary.BigEndian.PutUint32(out, uint32(len(out)))
		return out
	}
	smLen := append([]byte(nil), good...)
	smLen[len(smLen)-3] = 200
	ds := dataFrame(t, 0, 0, map[pdu.Tag][]byte{tagMessagePayload: []byte("hello")})
	for _, tt := range []struct {
		name  string
		parse func([]byte) (inboundPDU, error)
		frame []byte
		want  uint32
	}{
		{"deliver_sm tlv length past the end", parseDeliverSM, tail(good, 0x14, 0x01, 0x00, 0x09, 1), StatusInvTLVLen},
		{"deliver_sm tlv header cut", parseDeliverSM, tail(good, 0x14), StatusInvTLVs},
		{"deliver_sm sm_length past the end", parseDeliverSM, smLen, StatusXPAppn},
		{"deliver_sm mandatory part cut", parseDeliverSM, tail(good[:20]), StatusXPAppn},
		{"data_sm tlv length past the end", parseDataSM, tail(ds, 0x04, 0x24, 0x01, 0x00), StatusInvTLVLen},
		// A message_payload of 32 KiB or more: gosmpp would misread its
		// length (signed 16-bit), so it is refused, not decoded wrong.
		{"deliver_sm tlv of 32 KiB", parseDeliverSM, tail(good, append([]byte{0x04, 0x24, 0x80, 0x00}, make([]byte, 0x8000)...)...), StatusXPAppn},
		{"data_sm tlv header cut", parseDataSM, tail(ds, 0x04, 0x24, 0x00), StatusInvTLVs},
		{"data_sm mandatory part cut", parseDataSM, tail(ds[:19]), StatusXPAppn},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.parse(tt.frame)
			require.Error(t, err)
			require.Equal(t, StatusName(tt.want), StatusName(refusalStatus(err)))
			require.Equal(t, Permanent, Classify(refusalStatus(err)))
		})
	}
	_, err := parseDeliverSM(tail(good, 0x14, 0x01, 0x00, 0x01, 1))
	require.NoError(t, err, "a well-formed TLV")
}

// checkTLVs accepts exactly the streams that split into whole TLVs.
func FuzzCheckTLVs(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x04, 0x24, 0x00, 0x01, 'a'})
	f.Add([]byte{0x04, 0x24, 0x00, 0x09, 'a'})
	f.Add([]byte{0x04, 0x24, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkTLVs(b)
		if err != nil {
			if !errors.Is(err, errTLVStream) && !errors.Is(err, errTLVLen) && !errors.Is(err, errTLVTooLong) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		var rebuilt []byte
		for rest := b; len(rest) > 0; {
			n := 4 + int(binary.BigEndian.Uint16(rest[2:4]))
			rebuilt = append(rebuilt, rest[:n]...)
			rest = rest[n:]
		}
		if !bytes.Equal(rebuilt, b) {
			t.Fatalf("accepted %x, whole TLVs give %x", b, rebuilt)
		}
		if err := checkTLVs(append(append([]byte(nil), b...), 0, 1, 0, 0)); err != nil {
			t.Fatalf("valid stream plus an empty TLV refused: %v", err)
		}
	})
}
