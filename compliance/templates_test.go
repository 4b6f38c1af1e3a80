package compliance

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTemplates(t *testing.T) {
	require.Equal(t, "You are messaging with Acme Clinic. To opt out, reply STOP.", Notice("Acme Clinic"))
	require.Equal(t, "You are messaging with Acme Clinic, Inc. To opt out, reply STOP.", Notice("Acme Clinic, Inc."))

	tests := []struct {
		name string
		got  string
		want string
	}{
		{"stop default", StopReply("Acme Clinic", ""),
			"You have been unsubscribed from Acme Clinic messages. No more messages will be sent. Reply START to resubscribe."},
		{"stop blank custom", StopReply("Acme Clinic", "  \n"),
			"You have been unsubscribed from Acme Clinic messages. No more messages will be sent. Reply START to resubscribe."},
		{"stop custom", StopReply("Acme Clinic", "{org}: you're out. Text START to return to {org}."),
			"Acme Clinic: you're out. Text START to return to Acme Clinic."},
		{"start default", StartReply("Acme Clinic", ""),
			"You have been resubscribed to Acme Clinic messages. Reply STOP to opt out."},
		{"start custom", StartReply("Acme Clinic", "Welcome back!"), "Welcome back!"},
		{"help default", HelpReply("Acme Clinic", ""), "Acme Clinic: Reply STOP to opt out. Msg&data rates may apply."},
		{"help text", HelpReply("Acme Clinic", "Acme Clinic: call (555) 010-0000 for help."),
			"Acme Clinic: call (555) 010-0000 for help."},
		{"help placeholder", HelpReply("Acme", "{org} help: call us."), "Acme help: call us."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { require.Equal(t, tt.want, tt.got) })
	}
}
