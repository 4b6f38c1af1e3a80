package message

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConcatUDH(t *testing.T) {
	tests := []struct {
		name string
		c    Concat
		want string
	}{
		{"8-bit", Concat{Ref: 0xCC, Total: 2, Seq: 1}, "050003CC0201"},
		{"8-bit ref truncated to low byte", Concat{Ref: 0x12AB, Total: 3, Seq: 3}, "050003AB0303"},
		{"16-bit", Concat{Ref: 0x1234, Total: 3, Seq: 2, Ref16: true}, "0608041234" + "0302"},
		{"16-bit small ref", Concat{Ref: 7, Total: 255, Seq: 255, Ref16: true}, "0608040007FFFF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.UDH()
			require.Equal(t, mustHex(t, tt.want), got)
			c, ok, payload, err := ParseConcatUDH(append(got, 'x'))
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, []byte("x"), payload)
			want := tt.c
			if !want.Ref16 {
				want.Ref &= 0xFF
			}
			require.Equal(t, want, c)
		})
	}
}

func TestParseConcatUDH(t *testing.T) {
	tests := []struct {
		name    string
		ud      string
		want    Concat
		ok      bool
		payload string
		wantErr bool
	}{
		{name: "8-bit", ud: "050003CC0201" + "C834", want: Concat{Ref: 0xCC, Total: 2, Seq: 1}, ok: true, payload: "C834"},
		{name: "16-bit", ud: "06080412340302" + "0041", want: Concat{Ref: 0x1234, Total: 3, Seq: 2, Ref16: true}, ok: true, payload: "0041"},
		{name: "no payload", ud: "050003010101", want: Concat{Ref: 1, Total: 1, Seq: 1}, ok: true, payload: ""},
		{name: "other ie before", ud: "08" + "240101" + "0003070302" + "AA", want: Concat{Ref: 7, Total: 3, Seq: 2}, ok: true, payload: "AA"},
		{name: "other ie after", ud: "0A" + "0003070302" + "0A03000102" + "BB", want: Concat{Ref: 7, Total: 3, Seq: 2}, ok: true, payload: "BB"},
		{name: "empty ie before", ud: "07" + "7000" + "0003070302" + "CC", want: Concat{Ref: 7, Total: 3, Seq: 2}, ok: true, payload: "CC"},
		{name: "repeated ie: last wins", ud: "0A" + "0003010201" + "0003020202", want: Concat{Ref: 2, Total: 2, Seq: 2}, ok: true, payload: ""},
		{name: "empty udh", ud: "00" + "4142", ok: false, payload: "4142"},
		{name: "no concat ie", ud: "03" + "240101" + "41", ok: false, payload: "41"},
		{name: "total 0 ignored", ud: "050003070001" + "41", ok: false, payload: "41"},
		{name: "seq 0 ignored", ud: "050003070200" + "41", ok: false, payload: "41"},
		{name: "seq beyond total ignored", ud: "050003070203" + "41", ok: false, payload: "41"},
		{name: "invalid ie ignored, valid one kept", ud: "0A" + "0003070302" + "0003080203", want: Concat{Ref: 7, Total: 3, Seq: 2}, ok: true, payload: ""},
		{name: "empty user data", ud: "", wantErr: true},
		{name: "udhl beyond user data", ud: "0500030102", wantErr: true},
		{name: "udhl 255 with nothing", ud: "FF", wantErr: true},
		{name: "ie length beyond udh", ud: "03" + "0005010203", wantErr: true},
		{name: "truncated ie header", ud: "01" + "00", wantErr: true},
		{name: "truncated ie header after ie", ud: "04" + "240101" + "08" + "4141", wantErr: true},
		{name: "8-bit concat wrong length", ud: "06" + "0004CC020100", wantErr: true},
		{name: "16-bit concat wrong length", ud: "05" + "080312" + "3402", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok, payload, err := ParseConcatUDH(mustHex(t, tt.ud))
			if tt.wantErr {
				require.ErrorIs(t, err, ErrMalformedUDH)
				require.False(t, ok)
				require.Nil(t, payload)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, c)
			require.Equal(t, mustHex(t, tt.payload), append([]byte{}, payload...))
		})
	}
}

func FuzzParseConcatUDH(f *testing.F) {
	for _, s := range []string{"050003CC0201C834", "06080412340302", "08240101000307030241", "00", "FF", "0100", "", "0A0003010201000302020241"} {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, ud []byte) {
		c, ok, payload, err := ParseConcatUDH(ud)
		if err != nil {
			if ok || payload != nil {
				t.Fatalf("error with ok=%v payload=%x", ok, payload)
			}
			return
		}
		if len(ud) == 0 || len(payload) != len(ud)-1-int(ud[0]) || !bytes.Equal(payload, ud[1+int(ud[0]):]) {
			t.Fatalf("payload %x is not what follows the udh of %x", payload, ud)
		}
		if !ok {
			if c != (Concat{}) {
				t.Fatalf("ok=false with %+v", c)
			}
			return
		}
		if c.Total == 0 || c.Seq == 0 || c.Seq > c.Total || (!c.Ref16 && c.Ref > 0xFF) {
			t.Fatalf("invalid concat returned: %+v", c)
		}
		c2, ok2, p2, err2 := ParseConcatUDH(c.UDH())
		if err2 != nil || !ok2 || c2 != c || len(p2) != 0 {
			t.Fatalf("re-parse of %+v: %+v %v %x %v", c, c2, ok2, p2, err2)
		}
	})
}
