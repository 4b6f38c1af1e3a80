package message

// Segment limits (3GPP TS 23.040): a single SMS carries 140 octets, i.e. 160
// septets or 70 UTF-16 units; a part of a concatenated SMS loses 6 octets to
// the UDH (7 septets with the fill bit), leaving 153 septets or 67 units.
const (
	gsm7Single = 160
	gsm7Part   = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// TextInfo describes how a text is sent as SMS.
type TextInfo struct {
	// Encoding is gsm7 when every character is in the GSM 03.38 default
	// alphabet or its extension table, else ucs2.
	Encoding Encoding
	// Characters counts Unicode code points (each invalid UTF-8 byte counts as
	// one U+FFFD). API.md's 1600-character limit applies to it.
	Characters int
	// Units counts septets for gsm7 (an extension character takes 2) or UTF-16
	// code units for ucs2 (a character outside the BMP takes 2).
	Units int
	// Segments is the number of SMS the text is sent in: 0 for an empty text
	// (nothing to send, e.g. an MMS with media only), 1 if Units fits a single
	// message (160 septets / 70 units), else the parts of at most 153 septets /
	// 67 units that Split makes, never splitting an escape or surrogate pair.
	Segments int
}

// gsm7Width is the number of septets of a character with gsm7Lookup value v:
// 2 for an extension character, else 1 (a character outside GSM-7 is sent as
// '?').
func gsm7Width(v uint16) int {
	if v&gsm7InExt != 0 {
		return 2
	}
	return 1
}

// measureGSM7 counts the characters, septets and greedy parts of at most
// gsm7Part septets of text, taking a character outside GSM-7 as '?'. ok
// reports whether every character is GSM-7; with stop it returns as soon as
// one is not.
func measureGSM7(text string, stop bool) (chars, units, parts int, ok bool) {
	ok = true
	filled := gsm7Part // the first character opens the first part
	for _, r := range text {
		v := gsm7Lookup(r)
		w := gsm7Width(v)
		if v == 0 {
			ok = false
			if stop {
				return chars, units, parts, false
			}
		}
		chars++
		units += w
		if filled+w > gsm7Part {
			parts++
			filled = 0
		}
		filled += w
	}
	return chars, units, parts, ok
}

// measureUCS2 counts the characters, UTF-16 units and greedy parts of at
// most ucs2Part units of text.
func measureUCS2(text string) (chars, units, parts int) {
	filled := ucs2Part
	for _, r := range text {
		w := ucs2Units(r)
		chars++
		units += w
		if filled+w > ucs2Part {
			parts++
			filled = 0
		}
		filled += w
	}
	return chars, units, parts
}

// segments returns how many SMS units of an encoding take.
func segments(units, parts, single int) int {
	switch {
	case units == 0:
		return 0
	case units <= single:
		return 1
	}
	return parts
}

// Analyze reports the encoding, length and segment count of text. It does not
// allocate. Invalid UTF-8 bytes count as U+FFFD, which makes the text UCS-2.
// An empty text is gsm7 with 0 units and 0 segments.
func Analyze(text string) TextInfo {
	if chars, units, parts, ok := measureGSM7(text, true); ok {
		return TextInfo{
			Encoding:   EncodingGSM7,
			Characters: chars,
			Units:      units,
			Segments:   segments(units, parts, gsm7Single),
		}
	}
	chars, units, parts := measureUCS2(text)
	return TextInfo{
		Encoding:   EncodingUCS2,
		Characters: chars,
		Units:      units,
		Segments:   segments(units, parts, ucs2Single),
	}
}

// Split returns the wire payload of each segment of text, without UDH: for
// gsm7 one unpacked septet per byte (an extension character as 0x1B and its
// code, never split across parts), for any other encoding big-endian UTF-16
// (a surrogate pair never split across parts). A text that fits a single
// message (160 septets / 70 units) gives one part, a longer one parts of at
// most 153 septets / 67 units, filled greedily; so a part may hold 152
// septets or 66 units. An empty text gives no parts (nil). The parts share
// one backing array but are capped, so appending to one never alters another.
//
// Pass the encoding Analyze chose: with gsm7, characters outside GSM-7 are
// sent as '?'; invalid UTF-8 bytes are U+FFFD ('?' in gsm7).
func Split(text string, enc Encoding) [][]byte {
	if enc == EncodingGSM7 {
		return splitGSM7(text)
	}
	return splitUCS2(text)
}

func splitGSM7(text string) [][]byte {
	_, units, parts, _ := measureGSM7(text, false)
	if units == 0 {
		return nil
	}
	limit := gsm7Part
	if units <= gsm7Single {
		limit, parts = gsm7Single, 1
	}
	buf := make([]byte, 0, units)
	out := make([][]byte, 0, parts)
	start := 0
	for _, r := range text {
		v := gsm7Lookup(r)
		if len(buf)-start+gsm7Width(v) > limit {
			out = append(out, buf[start:len(buf):len(buf)])
			start = len(buf)
		}
		switch {
		case v == 0:
			buf = append(buf, gsm7Question)
		case v&gsm7InExt != 0:
			buf = append(buf, gsm7Escape, byte(v&0x7F))
		default:
			buf = append(buf, byte(v&0x7F))
		}
	}
	return append(out, buf[start:len(buf):len(buf)])
}

func splitUCS2(text string) [][]byte {
	_, units, parts := measureUCS2(text)
	if units == 0 {
		return nil
	}
	limit := 2 * ucs2Part
	if units <= ucs2Single {
		limit, parts = 2*ucs2Single, 1
	}
	buf := make([]byte, 0, 2*units)
	out := make([][]byte, 0, parts)
	start := 0
	for _, r := range text {
		if len(buf)-start+2*ucs2Units(r) > limit {
			out = append(out, buf[start:len(buf):len(buf)])
			start = len(buf)
		}
		buf = appendUCS2(buf, r)
	}
	return append(out, buf[start:len(buf):len(buf)])
}
