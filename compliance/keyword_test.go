package compliance

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestClassifyKeyword(t *testing.T) {
	tests := []struct {
		in   string
		want Keyword
	}{
		{"STOP", Keyword{Kind: "stop"}},
		{"stop", Keyword{Kind: "stop"}},
		{"  Stop.  ", Keyword{Kind: "stop"}},
		{"STOP!!!", Keyword{Kind: "stop"}},
		{"stop\n", Keyword{Kind: "stop"}},
		{"ＳＴＯＰ", Keyword{Kind: "stop"}}, // fullwidth, NFKC
		{"STOPALL", Keyword{Kind: "stop", All: true}},
		{"stop all", Keyword{Kind: "stop", All: true}},
		{"Stop-All", Keyword{Kind: "stop", All: true}},
		{"\u200bSTOP\u200b", Keyword{Kind: "stop"}}, // zero-width spaces around it
		{"\ufeffstop", Keyword{Kind: "stop"}},       // byte order mark
		{"ST\u200bOP", Keyword{Kind: "stop"}},       // or inside it
		{"Unsubscribe", Keyword{Kind: "stop"}},
		{"cancel", Keyword{Kind: "stop"}},
		{"END", Keyword{Kind: "stop"}},
		{"quit?", Keyword{Kind: "stop"}},
		{"Revoke", Keyword{Kind: "stop"}},
		{"OPTOUT", Keyword{Kind: "stop"}},
		{"opt out", Keyword{Kind: "stop"}},
		{"OPT \t  OUT", Keyword{Kind: "stop"}},
		{"opt-out", Keyword{Kind: "stop"}},
		{"START", Keyword{Kind: "start"}},
		{"yes!", Keyword{Kind: "start"}},
		{"Unstop", Keyword{Kind: "start"}},
		{"HELP", Keyword{Kind: "help"}},
		{"help?", Keyword{Kind: "help"}},
		{"info", Keyword{Kind: "help"}},
		{"", Keyword{}},
		{"   ", Keyword{}},
		{"stop texting me", Keyword{}},
		{"please stop", Keyword{}},
		{"STOP 🙏", Keyword{}},
		{"\"STOP\"", Keyword{}}, // leading punctuation is not ignored
		{"yes please", Keyword{}},
		{"I need help", Keyword{}},
		{"stopp", Keyword{}},
		{"S T O P", Keyword{}},
		{"end of course", Keyword{}},
		{"STOP" + strings.Repeat("!", 300), Keyword{Kind: "stop"}},
		{"STOP " + strings.Repeat("x", 300), Keyword{}},
		{"\u00a0stop\u3002", Keyword{Kind: "stop"}}, // no-break space, ideographic full stop
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, ClassifyKeyword(tt.in))
		})
	}
}

func TestPossibleOptOut(t *testing.T) {
	must := []string{
		"please stop texting me",
		"Stop texting me!",
		"stop messaging me",
		"Can you stop sending me these?",
		"unsubscribe me",
		"I want to unsubscribe",
		"how do I opt out of these",
		"no more messages please",
		"No more texts",
		"take me off your list",
		"Take me off the mailing list",
		"don't text me",
		"Do not text me again",
		"please don’t message me anymore",
		"remove me",
		"Remove my number from your system",
		"leave me alone",
		"I don't want these texts",
		"we no longer want to receive your messages",
		"stop the reminders please",
		"stop all these texts",
		"cancel my subscription",
		"please stop",
		"Stop please.",
		"STOP 🙏",
		"\"STOP\"",
		"stop stop",
		"quit texting me",
	}
	mustNot := []string{
		"stop",
		"STOP",
		"Stop.",
		"STOPALL",
		"unsubscribe",
		"cancel",
		"START",
		"help",
		"stop by the pharmacy",
		"I'll stop by the pharmacy after work",
		"I can't stop coughing",
		"should I stop taking the medication?",
		"When does the bus stop?",
		"The bleeding won't stop",
		"when should I stop the antibiotics",
		"Can you text me the address?",
		"don't forget to text me when you arrive",
		"I have no more pills left",
		"no more pain since Tuesday!",
		"Please remove the bandage tomorrow?",
		"Can I cancel my appointment?",
		"I want to stop smoking",
		"take me off the waitlist?",
		"Take me off the medication, it makes me dizzy",
		"I stopped texting my ex",
		"the pain ends after an hour",
		"Thanks! Message me when the results are in",
		"please keep texting me updates",
		"stop sign on the corner",
		"all out of refills",
		"",
	}
	for _, s := range must {
		t.Run("must/"+s, func(t *testing.T) { require.True(t, PossibleOptOut(s), s) })
	}
	for _, s := range mustNot {
		t.Run("not/"+s, func(t *testing.T) { require.False(t, PossibleOptOut(s), s) })
	}
}

func FuzzClassifyKeyword(f *testing.F) {
	for _, s := range []string{"STOP", "stop all", "opt  out", "help?", "ＳＴＯＰ", "please stop texting me", "stop by", "\xff", ""} {
		f.Add(s)
	}
	kinds := map[string]bool{"": true, "stop": true, "start": true, "help": true}
	f.Fuzz(func(t *testing.T, s string) {
		k := ClassifyKeyword(s)
		require.True(t, kinds[k.Kind], "kind %q", k.Kind)
		require.False(t, k.All && k.Kind != "stop")
		require.Equal(t, k, ClassifyKeyword(s))
		if k.Kind != "" {
			require.Equal(t, k, ClassifyKeyword(strings.ToLower(s)+" ."), "case and trailing punctuation must not matter")
			require.False(t, PossibleOptOut(s))
		}
		if utf8.ValidString(s) {
			require.Equal(t, PossibleOptOut(s), PossibleOptOut(s))
		}
	})
}
