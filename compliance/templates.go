package compliance

import "strings"

// OrgPlaceholder in a custom reply template is replaced by the org's name.
const OrgPlaceholder = "{org}"

// Notice is the sender identification and opt-out notice sent before the
// first message of a conversation the org starts (API.md 4.2). Its wording
// is fixed by industry policy and cannot be configured.
func Notice(orgName string) string {
	// "Acme Clinic, Inc." ends the sentence itself: no second full stop.
	return "You are messaging with " + strings.TrimSuffix(orgName, ".") + ". To opt out, reply STOP."
}

// StopReply is the confirmation sent after an opt-out keyword. custom, when
// not blank, replaces the default; {org} in it becomes orgName.
func StopReply(orgName, custom string) string {
	return render(orgName, custom, "You have been unsubscribed from {org} messages. "+
		"No more messages will be sent. Reply START to resubscribe.")
}

// StartReply is the confirmation sent after an opt-in keyword. custom, when
// not blank, replaces the default; {org} in it becomes orgName.
func StartReply(orgName, custom string) string {
	return render(orgName, custom, "You have been resubscribed to {org} messages. Reply STOP to opt out.")
}

// HelpReply answers a help keyword with the org's help text, or by default
// "<Org>: Reply STOP to opt out. Msg&data rates may apply."; {org} in the
// help text becomes orgName.
func HelpReply(orgName, helpText string) string {
	return render(orgName, helpText, "{org}: Reply STOP to opt out. Msg&data rates may apply.")
}

func render(orgName, custom, def string) string {
	t := strings.TrimSpace(custom)
	if t == "" {
		t = def
	}
	return strings.ReplaceAll(t, OrgPlaceholder, orgName)
}
