package message

import "strings"

// GSM 03.38 (3GPP TS 23.038) 7-bit default alphabet.
//
// Encoding is exact: only the characters shown in the default table and its
// extension table are GSM-7. In particular 0x09 encodes Ç (U+00C7, the glyph
// the standard prints); ç (U+00E7) is not in the alphabet and makes a text
// UCS-2. Control characters other than LF, CR and form feed (extension) are not
// in the alphabet either (a TAB makes a text UCS-2).

const (
	gsm7Escape   = 0x1B // escape to the extension table
	gsm7Question = 0x3F // '?', substituted for characters GSM-7 cannot carry
)

// gsm7Basic maps each default-alphabet code to its character. Read-only.
// Index 0x1B is the escape and is never looked up for a character.
var gsm7Basic = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 0x1B, 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// gsm7Ext maps each extension-table code (the septet after 0x1B) to its
// character; 0 means the code is not defined. Read-only.
var gsm7Ext = [128]rune{
	0x0A: '\f',
	0x14: '^',
	0x28: '{',
	0x29: '}',
	0x2F: '\\',
	0x3C: '[',
	0x3D: '~',
	0x3E: ']',
	0x40: '|',
	0x65: '€',
}

// Flags of gsm7Latin1 entries; the low 7 bits are the septet.
const (
	gsm7In    = 0x100 // the rune is GSM-7
	gsm7InExt = 0x200 // ... in the extension table (sent as 0x1B, septet)
)

// gsm7Latin1 maps the runes below U+0100 to their septet and flags; 0 means
// not GSM-7. Read-only. The other GSM-7 runes (Greek capitals and the euro
// sign) are in gsm7Code's switch.
var gsm7Latin1 = [256]uint16{
	'\n': gsm7In | 0x0A,
	'\f': gsm7In | gsm7InExt | 0x0A,
	'\r': gsm7In | 0x0D,
	' ':  gsm7In | 0x20,
	'!':  gsm7In | 0x21,
	'"':  gsm7In | 0x22,
	'#':  gsm7In | 0x23,
	'$':  gsm7In | 0x02,
	'%':  gsm7In | 0x25,
	'&':  gsm7In | 0x26,
	'\'': gsm7In | 0x27,
	'(':  gsm7In | 0x28,
	')':  gsm7In | 0x29,
	'*':  gsm7In | 0x2A,
	'+':  gsm7In | 0x2B,
	',':  gsm7In | 0x2C,
	'-':  gsm7In | 0x2D,
	'.':  gsm7In | 0x2E,
	'/':  gsm7In | 0x2F,
	'0':  gsm7In | 0x30,
	'1':  gsm7In | 0x31,
	'2':  gsm7In | 0x32,
	'3':  gsm7In | 0x33,
	'4':  gsm7In | 0x34,
	'5':  gsm7In | 0x35,
	'6':  gsm7In | 0x36,
	'7':  gsm7In | 0x37,
	'8':  gsm7In | 0x38,
	'9':  gsm7In | 0x39,
	':':  gsm7In | 0x3A,
	';':  gsm7In | 0x3B,
	'<':  gsm7In | 0x3C,
	'=':  gsm7In | 0x3D,
	'>':  gsm7In | 0x3E,
	'?':  gsm7In | 0x3F,
	'@':  gsm7In | 0x00,
	'A':  gsm7In | 0x41,
	'B':  gsm7In | 0x42,
	'C':  gsm7In | 0x43,
	'D':  gsm7In | 0x44,
	'E':  gsm7In | 0x45,
	'F':  gsm7In | 0x46,
	'G':  gsm7In | 0x47,
	'H':  gsm7In | 0x48,
	'I':  gsm7In | 0x49,
	'J':  gsm7In | 0x4A,
	'K':  gsm7In | 0x4B,
	'L':  gsm7In | 0x4C,
	'M':  gsm7In | 0x4D,
	'N':  gsm7In | 0x4E,
	'O':  gsm7In | 0x4F,
	'P':  gsm7In | 0x50,
	'Q':  gsm7In | 0x51,
	'R':  gsm7In | 0x52,
	'S':  gsm7In | 0x53,
	'T':  gsm7In | 0x54,
	'U':  gsm7In | 0x55,
	'V':  gsm7In | 0x56,
	'W':  gsm7In | 0x57,
	'X':  gsm7In | 0x58,
	'Y':  gsm7In | 0x59,
	'Z':  gsm7In | 0x5A,
	'[':  gsm7In | gsm7InExt | 0x3C,
	'\\': gsm7In | gsm7InExt | 0x2F,
	']':  gsm7In | gsm7InExt | 0x3E,
	'^':  gsm7In | gsm7InExt | 0x14,
	'_':  gsm7In | 0x11,
	'a':  gsm7In | 0x61,
	'b':  gsm7In | 0x62,
	'c':  gsm7In | 0x63,
	'd':  gsm7In | 0x64,
	'e':  gsm7In | 0x65,
	'f':  gsm7In | 0x66,
	'g':  gsm7In | 0x67,
	'h':  gsm7In | 0x68,
	'i':  gsm7In | 0x69,
	'j':  gsm7In | 0x6A,
	'k':  gsm7In | 0x6B,
	'l':  gsm7In | 0x6C,
	'm':  gsm7In | 0x6D,
	'n':  gsm7In | 0x6E,
	'o':  gsm7In | 0x6F,
	'p':  gsm7In | 0x70,
	'q':  gsm7In | 0x71,
	'r':  gsm7In | 0x72,
	's':  gsm7In | 0x73,
	't':  gsm7In | 0x74,
	'u':  gsm7In | 0x75,
	'v':  gsm7In | 0x76,
	'w':  gsm7In | 0x77,
	'x':  gsm7In | 0x78,
	'y':  gsm7In | 0x79,
	'z':  gsm7In | 0x7A,
	'{':  gsm7In | gsm7InExt | 0x28,
	'|':  gsm7In | gsm7InExt | 0x40,
	'}':  gsm7In | gsm7InExt | 0x29,
	'~':  gsm7In | gsm7InExt | 0x3D,
	'¡':  gsm7In | 0x40,
	'£':  gsm7In | 0x01,
	'¤':  gsm7In | 0x24,
	'¥':  gsm7In | 0x03,
	'§':  gsm7In | 0x5F,
	'¿':  gsm7In | 0x60,
	'Ä':  gsm7In | 0x5B,
	'Å':  gsm7In | 0x0E,
	'Æ':  gsm7In | 0x1C,
	'Ç':  gsm7In | 0x09,
	'É':  gsm7In | 0x1F,
	'Ñ':  gsm7In | 0x5D,
	'Ö':  gsm7In | 0x5C,
	'Ø':  gsm7In | 0x0B,
	'Ü':  gsm7In | 0x5E,
	'ß':  gsm7In | 0x1E,
	'à':  gsm7In | 0x7F,
	'ä':  gsm7In | 0x7B,
	'å':  gsm7In | 0x0F,
	'æ':  gsm7In | 0x1D,
	'è':  gsm7In | 0x04,
	'é':  gsm7In | 0x05,
	'ì':  gsm7In | 0x07,
	'ñ':  gsm7In | 0x7D,
	'ò':  gsm7In | 0x08,
	'ö':  gsm7In | 0x7C,
	'ø':  gsm7In | 0x0C,
	'ù':  gsm7In | 0x06,
	'ü':  gsm7In | 0x7E,
}

// gsm7Code returns the septet of r and whether it is an extension character
// (sent as 0x1B followed by the septet). ok is false when r is not GSM-7.
// It must agree with gsm7Basic and gsm7Ext (checked exhaustively by a test).
func gsm7Code(r rune) (code byte, ext, ok bool) {
	v := gsm7Lookup(r)
	return byte(v & 0x7F), v&gsm7InExt != 0, v&gsm7In != 0
}

// gsm7Lookup returns the septet and flags of r as in gsm7Latin1 (0: not
// GSM-7). It is small enough to inline into the per-character loops.
func gsm7Lookup(r rune) uint16 {
	if uint32(r) < 0x100 {
		return gsm7Latin1[r]
	}
	return gsm7LookupHigh(r)
}

// gsm7LookupHigh is gsm7Lookup for runes from U+0100: the Greek capitals and
// the euro sign.
//
//go:noinline
func gsm7LookupHigh(r rune) uint16 {
	switch r {
	case 'Δ':
		return gsm7In | 0x10
	case 'Φ':
		return gsm7In | 0x12
	case 'Γ':
		return gsm7In | 0x13
	case 'Λ':
		return gsm7In | 0x14
	case 'Ω':
		return gsm7In | 0x15
	case 'Π':
		return gsm7In | 0x16
	case 'Ψ':
		return gsm7In | 0x17
	case 'Σ':
		return gsm7In | 0x18
	case 'Θ':
		return gsm7In | 0x19
	case 'Ξ':
		return gsm7In | 0x1A
	case '€':
		return gsm7In | gsm7InExt | 0x65
	}
	return 0
}

// EncodeGSM7 returns text as unpacked GSM-7 septets, one per byte, extension
// characters as 0x1B followed by their code. ok is false (and septets nil)
// when a character of text is not in the default alphabet or the extension
// table; invalid UTF-8 is never GSM-7.
func EncodeGSM7(text string) (septets []byte, ok bool) {
	n := 0
	for _, r := range text {
		_, ext, ok := gsm7Code(r)
		if !ok {
			return nil, false
		}
		n++
		if ext {
			n++
		}
	}
	septets = make([]byte, 0, n)
	for _, r := range text {
		septets = appendGSM7(septets, r)
	}
	return septets, true
}

// appendGSM7 appends the septets of r to dst; a character outside GSM-7 is
// appended as '?'.
func appendGSM7(dst []byte, r rune) []byte {
	code, ext, ok := gsm7Code(r)
	switch {
	case !ok:
		return append(dst, gsm7Question)
	case ext:
		return append(dst, gsm7Escape, code)
	}
	return append(dst, code)
}

// DecodeGSM7 returns the text of unpacked GSM-7 septets (one per byte; the
// high bit of each byte is ignored). Following 23.038, an escape followed by
// a code the extension table does not define decodes as the default-alphabet
// character of that code, and 0x1B 0x1B (reserved for a further extension
// table) decodes as a space. A lone escape at the end is dropped.
func DecodeGSM7(septets []byte) string {
	var b strings.Builder
	b.Grow(len(septets))
	for i := 0; i < len(septets); i++ {
		c := septets[i] & 0x7F
		if c != gsm7Escape {
			b.WriteRune(gsm7Basic[c])
			continue
		}
		if i+1 == len(septets) {
			break
		}
		i++
		n := septets[i] & 0x7F
		switch {
		case n == gsm7Escape:
			b.WriteByte(' ')
		case gsm7Ext[n] != 0:
			b.WriteRune(gsm7Ext[n])
		default:
			b.WriteRune(gsm7Basic[n])
		}
	}
	return b.String()
}

// clampFill keeps a fill-bit count in the range a UDH can need (0..6).
func clampFill(fillBits int) int {
	return min(max(fillBits, 0), 6)
}

// PackGSM7 packs septets (the high bit of each byte is ignored) into octets as
// in an SMS TP-UD: least significant bit first, the first septet starting
// after fillBits zero bits (the fill that aligns septets after a UDH: 1 for a
// 6-octet UDH, 0 without UDH; values outside 0..6 are clamped). Unused bits of
// the last octet are zero; the receiver knows the septet count from TP-UDL.
func PackGSM7(septets []byte, fillBits int) []byte {
	fill := clampFill(fillBits)
	bits := fill + 7*len(septets)
	out := make([]byte, (bits+7)/8)
	pos := fill
	for _, s := range septets {
		v := uint16(s&0x7F) << (pos % 8)
		out[pos/8] |= byte(v)
		if hi := byte(v >> 8); hi != 0 {
			out[pos/8+1] |= hi
		}
		pos += 7
	}
	return out
}

// UnpackGSM7 returns the first septets septets packed in packed after
// fillBits fill bits (clamped to 0..6), one per byte. It returns fewer when
// packed is too short to hold them all, and never reads beyond packed.
func UnpackGSM7(packed []byte, fillBits, septets int) []byte {
	fill := clampFill(fillBits)
	avail := (len(packed)*8 - fill) / 7
	n := min(max(septets, 0), max(avail, 0))
	out := make([]byte, n)
	pos := fill
	for i := range out {
		v := uint16(packed[pos/8])
		if pos/8+1 < len(packed) {
			v |= uint16(packed[pos/8+1]) << 8
		}
		out[i] = byte(v>>(pos%8)) & 0x7F
		pos += 7
	}
	return out
}
