package compliance

import (
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/smsgate/smsgate/message"
	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	rules := DefaultRules()
	okSender := Sender{E164: "+15550001111", Kind: "long_code", Registered: true, MMS: true}
	png := message.Media{URL: "https://cdn.example.com/a/scan.png", ContentType: "image/png", Size: 1000}
	tests := []struct {
		name     string
		o        Outbound
		refusal  *Refusal // Message is checked only for the listed substrings
		contains []string
		warnings []string // categories
	}{
		{
			name: "plain ok",
			o:    Outbound{Sender: okSender, Text: "Your appointment is at 10:30."},
		},
		{
			name:     "unregistered first",
			o:        Outbound{Sender: Sender{E164: "+15550002222", Kind: "long_code"}, Text: strings.Repeat("weed ", 400)},
			refusal:  &Refusal{Status: http.StatusForbidden, Code: "sender_unregistered", Field: "from"},
			contains: []string{"+15550002222", "not registered", "register it", "Inbound"},
		},
		{
			name:     "too long at 1600",
			o:        Outbound{Sender: okSender, Text: strings.Repeat("é", 1600)},
			refusal:  &Refusal{Status: http.StatusUnprocessableEntity, Code: "message_too_long", Field: "text"},
			contains: []string{"1600 characters long", "1600 characters or more"},
		},
		{
			name: "1599 ok",
			o:    Outbound{Sender: okSender, Text: strings.Repeat("a", 1599)},
		},
		{
			name:     "too long before media and content",
			o:        Outbound{Sender: okSender, Text: strings.Repeat("weed ", 400), Media: []message.Media{{URL: "ftp://x", ContentType: "video/mp4"}}},
			refusal:  &Refusal{Status: 422, Code: "message_too_long", Field: "text"},
			contains: []string{"2000 characters long"},
		},
		{
			name: "media ok",
			o: Outbound{Sender: okSender, Text: "Your scan", MaxMediaBytes: 5000, Media: []message.Media{
				png,
				{URL: "https://cdn.example.com/r.JPG?sig=1", ContentType: "image/jpeg", Size: 2000},
				{URL: "http://cdn.example.com/report.pdf", ContentType: "application/pdf; name=report.pdf"},
				{URL: "https://cdn.example.com/blob/123", ContentType: "image/jpg", Size: 2000},
			}},
		},
		{
			name:     "mms not supported toll free",
			o:        Outbound{Sender: Sender{E164: "+18005550100", Kind: "toll_free", Registered: true}, Text: "hi", Media: []message.Media{png}},
			refusal:  &Refusal{Status: 422, Code: "mms_not_supported", Field: "media"},
			contains: []string{"+18005550100", "toll-free", "without media"},
		},
		{
			name:     "mms not supported long code",
			o:        Outbound{Sender: Sender{E164: "+15550003333", Kind: "long_code", Registered: true}, Media: []message.Media{{URL: "x", ContentType: "video/mp4"}}},
			refusal:  &Refusal{Status: 422, Code: "mms_not_supported", Field: "media"},
			contains: []string{"cannot send media"},
		},
		{
			name:     "unsupported type",
			o:        Outbound{Sender: okSender, Media: []message.Media{png, {URL: "https://x.example/v.mp4", ContentType: "video/mp4"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[1].content_type"},
			contains: []string{"Media 2", "video/mp4", "PNG, JPEG and PDF"},
		},
		{
			name:     "missing type",
			o:        Outbound{Sender: okSender, Media: []message.Media{{URL: "https://x.example/a.png"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].content_type"},
			contains: []string{"content_type"},
		},
		{
			name:     "extension mismatch",
			o:        Outbound{Sender: okSender, Media: []message.Media{{URL: "https://x.example/a.gif", ContentType: "image/png"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].url"},
			contains: []string{"image/png", ".gif"},
		},
		{
			name:     "extension of other allowed type",
			o:        Outbound{Sender: okSender, Media: []message.Media{{URL: "https://x.example/a.pdf", ContentType: "image/jpeg"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].url"},
			contains: []string{".pdf"},
		},
		{
			name:     "relative url",
			o:        Outbound{Sender: okSender, Media: []message.Media{{URL: "/a.png", ContentType: "image/png"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].url"},
			contains: []string{"absolute http or https"},
		},
		{
			name:     "ftp url",
			o:        Outbound{Sender: okSender, Media: []message.Media{{URL: "ftp://x.example/a.png", ContentType: "image/png"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].url"},
			contains: []string{"ftp://x.example/a.png"},
		},
		{
			name:     "too big together",
			o:        Outbound{Sender: okSender, MaxMediaBytes: 1500, Media: []message.Media{png, png}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media"},
			contains: []string{"2000 bytes", "1500 bytes"},
		},
		{
			name: "size overflow",
			o: Outbound{Sender: okSender, MaxMediaBytes: 1500, Media: []message.Media{
				{URL: png.URL, ContentType: png.ContentType, Size: math.MaxInt64},
				{URL: png.URL, ContentType: png.ContentType, Size: math.MaxInt64},
			}},
			refusal: &Refusal{Status: 422, Code: "media_unsupported", Field: "media"},
		},
		{
			name:    "negative size",
			o:       Outbound{Sender: okSender, Media: []message.Media{{URL: png.URL, ContentType: png.ContentType, Size: -1}}},
			refusal: &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].size"},
		},
		{
			name:     "content blocked",
			o:        Outbound{Sender: okSender, Text: "Our new C.B.D oil and a beer"},
			refusal:  &Refusal{Status: 422, Code: "content_blocked", Field: "text", Category: "cannabis", Term: "cbd"},
			contains: []string{`"cbd"`, "cannabis", "rephrase"},
			warnings: []string{"alcohol"},
		},
		{
			name:     "media checked before content",
			o:        Outbound{Sender: okSender, Text: "weed", Media: []message.Media{{URL: "https://x/a.gif", ContentType: "image/gif"}}},
			refusal:  &Refusal{Status: 422, Code: "media_unsupported", Field: "media[0].content_type"},
			contains: []string{"image/gif"},
		},
		{
			name:     "warn only",
			o:        Outbound{Sender: okSender, Text: "Your Xanax refill is ready. Avoid wine."},
			warnings: []string{"prescription_drugs", "alcohol"},
		},
		{
			name:     "org downgrade",
			o:        Outbound{Sender: okSender, Text: "Medical marijuana card renewal", OrgScreening: map[string]string{"cannabis": "warn"}},
			warnings: []string{"cannabis"},
		},
		{
			name: "org allow",
			o:    Outbound{Sender: okSender, Text: "Medical marijuana card renewal", OrgScreening: map[string]string{"cannabis": "allow"}},
		},
		{
			name:     "org upgrade",
			o:        Outbound{Sender: okSender, Text: "Your Xanax is ready", OrgScreening: map[string]string{"prescription_drugs": "block"}},
			refusal:  &Refusal{Status: 422, Code: "content_blocked", Field: "text", Category: "prescription_drugs", Term: "xanax"},
			contains: []string{"prescription drugs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Check(tt.o, rules)
			require.Equal(t, message.Analyze(tt.o.Text), v.Info)
			var cats []string
			for _, w := range v.Warnings {
				require.Equal(t, "content_warning", w.Code)
				require.Contains(t, w.Message, categoryLabel(w.Category))
				cats = append(cats, w.Category)
			}
			require.Equal(t, tt.warnings, cats)
			if tt.refusal == nil {
				require.Nil(t, v.Refusal)
				return
			}
			require.NotNil(t, v.Refusal)
			got := *v.Refusal
			for _, s := range tt.contains {
				require.Contains(t, got.Message, s)
			}
			require.NotEmpty(t, got.Message)
			require.True(t, strings.HasSuffix(got.Message, "."), "message should be a sentence: %q", got.Message)
			got.Message = ""
			require.Equal(t, *tt.refusal, got)
			require.Equal(t, got.Code+": ", v.Refusal.Error()[:len(got.Code)+2])
		})
	}
}

func TestCheckNilRules(t *testing.T) {
	v := Check(Outbound{Sender: Sender{Registered: true}, Text: "weed"}, nil)
	require.Nil(t, v.Refusal)
	require.Empty(t, v.Warnings)
	require.Equal(t, 1, v.Info.Segments)
}

func BenchmarkCheck(b *testing.B) {
	r := DefaultRules()
	o := Outbound{
		Sender:        Sender{E164: "+15550001111", Kind: "long_code", Registered: true, MMS: true},
		OrgScreening:  map[string]string{"prescription_drugs": "warn"},
		Text:          text160,
		Media:         []message.Media{{URL: "https://cdn.example.com/a/scan.png", ContentType: "image/png", Size: 1000}},
		MaxMediaBytes: 5_000_000,
	}
	b.ReportAllocs()
	for b.Loop() {
		if v := Check(o, r); v.Refusal != nil || len(v.Warnings) != 1 {
			b.Fatal("unexpected verdict")
		}
	}
}
